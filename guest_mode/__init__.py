"""The PyQt6 plate manager that hosts BatchWorkflowService through Trio guest mode.

- ``runner``: Trio as a guest of the Qt loop (``GuestRunner``), the excepthook, the GC freeze; ``tick_monitor``.
- ``session``: the Qt-free ``BatchSession``: batch control and the close protocol; ``connection``: one server
  connection at a time and the status line; ``host``: the session's view protocol and its ``BatchHost``.
- ``window``: the window's layout and slots; ``tables``: the plate and attached-executions tables (model/view).
- ``attached``: following the executions another client left running.
- ``data_views``: the plate map (``platemap``), well view (``wellview``) and results (``results_view``) of the
  plate shown, and their loading off the Trio thread.
"""
