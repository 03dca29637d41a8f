"""The policy layer: :class:`~.service.BatchWorkflowService`, the plate ledger (:mod:`.ledger`), the host contract
(:mod:`.host`), progress projection (:mod:`.progress`) and the one execution follower (:mod:`.follow`). Imports
neither Qt nor ZeroMQ, not even indirectly."""
