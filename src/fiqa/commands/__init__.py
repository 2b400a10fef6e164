"""Click commands, one module per pipeline stage (registered in ``fiqa.cli``)."""
