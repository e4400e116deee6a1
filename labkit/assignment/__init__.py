"""The lab as an assignment: a worksheet per student, a self-check of their own capture, a grading run.

`make assignment-<proto> STUDENT=<id>` prints the worksheet (values derived from the id and the course
secret), `make check-<proto> STUDENT=<id>` checks the student's latest recording against it (done with
Wireshark frame numbers, or not yet with a hint) and writes an annotated copy whose packet comments explain
the evidence frames, and `make grade SUBMISSIONS=<folder>` grades a class in one table.
"""
