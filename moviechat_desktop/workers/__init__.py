"""Qt glue between the engine and the UI: worker threads and the qasync bridge."""
