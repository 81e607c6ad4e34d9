"""`collections`: portfolio intake, operator commands and the embedded demo."""
