//! `muster man [SUBCOMMAND]`: manual pages (roff), generated from the same clap definitions as
//! `--help` so the two never disagree. muster's page lists the subcommands, then has `muster
//! run` in full (the command most people look up); each subcommand has a page of its own,
//! muster-SUBCOMMAND(1), which the main page's SEE ALSO names.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::args::Cli;

/// The subcommands that have a page, in the interface's order.
fn subcommands() -> Vec<clap::Command> {
    Cli::command().get_subcommands().filter(|sub| !sub.is_hide_set()).cloned().collect()
}

/// Writes `muster-SUB(1)`, the page of subcommand `sub`, to `out`; false when there is none.
pub fn render_subcommand(out: &mut dyn Write, sub: &str) -> io::Result<bool> {
    let Some(command) = subcommands().into_iter().find(|c| c.get_name() == sub) else { return Ok(false) };
    let name = format!("muster-{sub}");
    let command = command.name(name).bin_name(format!("muster {sub}")).version(env!("CARGO_PKG_VERSION"));
    let page = clap_mangen::Man::new(command);
    page.render(out)?;
    writeln!(out, ".SH \"SEE ALSO\"")?;
    writeln!(out, "muster(1)")?;
    Ok(true)
}

/// Writes muster's own page to `out`.
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
    writeln!(out, ".SH \"SEE ALSO\"")?;
    let pages: Vec<String> =
        subcommands().iter().map(|sub| format!("\\fBmuster\\-{}\\fR(1)", sub.get_name())).collect();
    writeln!(out, "{} \\(em each printed by \\fBmuster man\\fR \\fISUBCOMMAND\\fR.", pages.join(", "))?;
    page.render_version_section(out)
}

/// `muster man [SUBCOMMAND]`: the page on stdout; a reader that went away (`| head`) is not
/// an error.
pub fn command(sub: Option<&str>) -> Result<u8, crate::fatal::Fatal> {
    let mut stdout = io::stdout().lock();
    let rendered = match sub {
        None => render(&mut stdout).map(|()| true),
        Some(sub) => render_subcommand(&mut stdout, sub),
    };
    match rendered.and_then(|found| stdout.flush().map(|()| found)) {
        Ok(true) => Ok(0),
        Ok(false) => {
            let names: Vec<String> = subcommands().iter().map(|c| c.get_name().to_owned()).collect();
            Err(crate::fatal::Fatal {
                code: crate::fatal::USAGE_ERROR,
                message: format!(
                    "no manual page for '{}': muster man takes one of {}",
                    sub.unwrap_or(""),
                    names.join(", ")
                ),
            })
        }
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(err) => Err(crate::fatal::Fatal {
            code: crate::fatal::USAGE_ERROR,
            message: format!("writing the manual page: {err}"),
        }),
    }
}
