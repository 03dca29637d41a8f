"""The policy layer: :class:`~.service.BatchWorkflowService`, the host contract (:mod:`.host`) and progress
projection (:mod:`.progress`). Imports neither Qt nor ZeroMQ, not even indirectly."""
