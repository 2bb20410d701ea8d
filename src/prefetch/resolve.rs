//! `--prefetch-entrypoint`: the startup list derived from the config's Entrypoint and Cmd.
