"""The earlier CastRay's endpoints (docs/compatibility.md), answered from CastRay's models.

Same paths and the field names old clients read, all in this package: views by feature
(status, nodes, casts, generator, clusters), their request serializers and their URLs. Two
differences, both documented in docs/compatibility.md: every endpoint needs a login or an API token
(CASTRAY_ANONYMOUS_STATUS opens /api/status and /health details to anonymous clients), and
errors are a 4xx with `{"success": false, "message": ...}` instead of a 200.

Casting is asynchronous here: `success: true` means the cast or message was accepted and queued;
its outcome is in /api/v1/transfers/<id>/ (or /api/v1/messages/<id>/) and on /ws. The cluster
endpoints never call Ray either: discovery reads Ray's files and knocks on loopback ports;
connect and disconnect record a `ClusterOperation` the worker carries out (202 Accepted, then
GET /api/cluster/operations/<id>); the node lists read what the worker recorded.
"""
