"""The PyQt6 plate manager that hosts BatchWorkflowService through Trio guest mode."""
