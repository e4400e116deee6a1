"""`make bench`: each lab server under concurrent load on loopback, next to a baseline measured in the same run.

REST and SOAP against the servers the original course repo used (Flask's development server, wsgiref),
the TCP line servers against a minimal asyncio server, our MQTT clients against Mosquitto's C clients.
`python -m labkit.bench [--quick] [--protocols rest soap ...]`; results in bench-results/.
"""
