"""One Screen (or ModalScreen) per file."""
