"""The terminal wallet (a Textual app that signs payments itself): not built yet."""
