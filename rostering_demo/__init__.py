"""The demo and test harness beside the product: seeded synthetic uploads (`generator`) and a
loopback SFTP server (`embedded_sftp`) for `rostering demo`, `rostering ui`, the benchmarks and
the tests. Not part of the product wheel (see pyproject.toml)."""
