//! The `sgw` gateway: volumes, the daemon, the REST API and the CLI.
