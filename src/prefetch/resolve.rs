//! `--prefetch-entrypoint`: the startup list derived from the config's Entrypoint and Cmd.

use super::{ImageFiles, Startup, StartupList};

/// Placeholder until the resolver lands: the program named by the command, if found.
pub fn startup_list(_files: &dyn ImageFiles, _startup: &Startup) -> crate::Result<StartupList> {
    Ok(StartupList::default())
}
