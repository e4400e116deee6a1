# The lab as an assignment (labkit/assignment, docs/assignment-student.md, docs/assignment-lecturer.md):
#   make assignment-<proto> STUDENT=<id>            the student's worksheet: their own values, what to run and explain
#   make check-<proto> STUDENT=<id> [PCAP=<file>]   their latest recording (captures/<proto>.pcapng) against it:
#                                                   done with frame numbers, or not yet with a hint; writes
#                                                   <name>.check-<id>.md and <name>.annotated.pcapng beside it
#   make grade SUBMISSIONS=<folder> [OUT=<folder>]  a class in one table (grades/<folder>-<time>/grades.md, .csv)
# Values come from the student id and the course secret: COURSE_SECRET=... or COURSE_SECRET_FILE=<file>.
# STUDENT, PCAP, SUBMISSIONS and OUT reach the tool through the environment, never through the shell's text.

.PHONY: grade setup-assignment

need_student = test -n "$$STUDENT" || { echo "usage: make $@ STUDENT=<your student id (NIM)>" >&2; exit 2; }

setup-assignment: ## what checks and grading need: .venv, and tshark's editcap for the annotated copies (apt, as root)
	@scripts/setup.sh assignment

assignment-%: setup-analyze ## your worksheet for a protocol: make assignment-mqtt STUDENT=<id>
	@$(check_proto)
	@$(need_student)
	@$(PY) -m labkit.assignment worksheet $* --student="$$STUDENT"

check-%: setup-assignment ## check your recording against your worksheet: make check-mqtt STUDENT=<id> [PCAP=<file>]
	@$(check_proto)
	@$(need_student)
	@$(PY) -m labkit.assignment check $* --student="$$STUDENT" --captures "$(CAPTURES)" \
	  $${PCAP:+--pcap "$$PCAP"} $${OUT:+--out "$$OUT"}

grade: setup-assignment ## grade a folder of students' captures: make grade SUBMISSIONS=<folder> [OUT=<folder>] [ANNOTATE=1]
	@test -n "$$SUBMISSIONS" || { echo "usage: make grade SUBMISSIONS=<folder of <id>.pcapng files or <id>/ folders>" >&2; exit 2; }
	@$(PY) -m labkit.assignment grade "$$SUBMISSIONS" $${OUT:+--out "$$OUT"} $${ANNOTATE:+--annotate}
