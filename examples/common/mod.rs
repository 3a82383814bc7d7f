//! A few lines of flag parsing shared by the seed examples, so they need no CLI crate.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// Parsed `--name value` options and `--flag` switches.
pub struct Options {
    program: String,
    values: HashMap<String, String>,
    flags: HashSet<String>,
}

impl Options {
    /// Parses the process arguments; `valued` take a value, `switches` do not. Anything else
    /// is a usage error: print it and exit with status 2.
    pub fn parse(valued: &[&str], switches: &[&str]) -> Options {
        let mut args = std::env::args();
        let program = args.next().unwrap_or_else(|| "example".into());
        let mut options = Options { program, values: HashMap::new(), flags: HashSet::new() };
        while let Some(arg) = args.next() {
            let name = arg.trim_start_matches("--");
            if arg.starts_with("--") && valued.contains(&name) {
                match args.next() {
                    Some(value) => {
                        options.values.insert(name.to_owned(), value);
                    }
                    None => options.usage(&format!("--{name} needs a value")),
                }
            } else if arg.starts_with("--") && switches.contains(&name) {
                options.flags.insert(name.to_owned());
            } else {
                let mut known: Vec<String> = valued.iter().map(|v| format!("--{v} VALUE")).collect();
                known.extend(switches.iter().map(|s| format!("--{s}")));
                options.usage(&format!("unexpected argument '{arg}' (known: {})", known.join(", ")));
            }
        }
        options
    }

    /// The value of `--name`, or `default` when it was not given.
    pub fn value<T: FromStr>(&self, name: &str, default: T) -> T {
        self.optional(name).unwrap_or(default)
    }

    /// The value of `--name`, if given.
    pub fn optional<T: FromStr>(&self, name: &str) -> Option<T> {
        let raw = self.values.get(name)?;
        Some(raw.parse().unwrap_or_else(|_| self.usage(&format!("invalid value '{raw}' for --{name}"))))
    }

    /// Whether `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }

    fn usage(&self, problem: &str) -> ! {
        eprintln!("{}: {problem}", self.program.rsplit('/').next().unwrap_or("example"));
        std::process::exit(2);
    }
}

/// The time of day (UTC) as `HH:MM:SS`, like the seed's `strftime('%X')`.
pub fn clock() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", secs / 3600, secs / 60 % 60, secs % 60, now.subsec_millis())
}
