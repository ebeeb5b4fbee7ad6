Added `-h` as a short form of `--help` on every command.
