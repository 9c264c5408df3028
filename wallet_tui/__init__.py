"""The terminal wallet: a Textual app that holds the key and signs every payment itself."""
