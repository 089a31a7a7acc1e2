"""The roster as applied: diffing an upload against it, applying the diff, reading it back."""
