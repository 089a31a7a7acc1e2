"""The upload contract of UPLOAD_SPEC.md: files, columns, and the rules rows must follow."""
