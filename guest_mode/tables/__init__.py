"""The window's tables as Qt model/view pairs: the plate table and the executions started elsewhere."""
