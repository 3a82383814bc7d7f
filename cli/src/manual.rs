//! `muster man`: the manual page (roff), generated from the same clap definitions as `--help`
//! so the two never disagree. One page: muster and its subcommands, then `muster run` in full
//! (its option groups, examples and exit statuses), the command most people look up.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::args::Cli;

/// Writes the manual page to `out`.
pub fn render(out: &mut dyn Write) -> io::Result<()> {
    let command = Cli::command();
    let page = clap_mangen::Man::new(command.clone());
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_subcommands_section(out)?;
    if let Some(run) = command.find_subcommand("run") {
        let run = clap_mangen::Man::new(run.clone().name("muster run"));
        writeln!(out, ".SH \"MUSTER RUN\"")?;
        run.render_synopsis_section(out)?;
        run.render_description_section(out)?;
        run.render_options_section(out)?;
        run.render_extra_section(out)?;
    }
    page.render_version_section(out)
}

/// `muster man`: the page on stdout; a reader that went away (`| head`) is not an error.
pub fn command() -> Result<u8, crate::fatal::Fatal> {
    let mut stdout = io::stdout().lock();
    match render(&mut stdout).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(0),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(err) => Err(crate::fatal::Fatal { code: 2, message: format!("writing the manual page: {err}") }),
    }
}
