//! Command templates: GNU parallel's replacement strings, substituted inside argv elements.
//!
//! A template is the command's words, parsed once. Rendering a task substitutes its input into
//! each word, byte for byte (inputs are never assumed to be UTF-8) and never through a shell:
//! an input containing spaces, quotes or `;` stays one argument. With [`Template::shell`], the
//! words are joined into one `sh -c` script and every substituted value that holds anything
//! but letters, digits and `-_./=:,+@%^` is single-quoted, so inputs still cannot inject shell
//! syntax (and `$(( {} * 2 ))` works for numbers).
//!
//! | string | value |
//! |---|---|
//! | `{}` | the input (several sources: their values joined by a space) |
//! | `{.}` | the input without its extension (`dir/a.tar.gz` → `dir/a.tar`) |
//! | `{/}` | the basename (`dir/a.txt` → `a.txt`) |
//! | `{//}` | the directory (`dir/a.txt` → `dir`, `a.txt` → `.`) |
//! | `{/.}` | the basename without extension |
//! | `{#}` | the task's sequence number |
//! | `{%}` | the worker slot running it (1..=jobs) |
//! | `{N}`, `{N.}`, `{N/}`, `{N//}`, `{N/.}` | the same for input source N |
//!
//! Braces that match none of these stay as they are. With no replacement string in the whole
//! command, each source's value is appended as one more argument.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// How a value is transformed before substitution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transform {
    Whole,
    NoExtension,
    Basename,
    Dirname,
    BasenameNoExtension,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    /// `source` is `None` for all sources joined, or the 0-based source index.
    Value {
        source: Option<usize>,
        transform: Transform,
    },
    Seq,
    Slot,
}

/// A template was malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No command word was given.
    #[error("no command given")]
    Empty,
    /// `{N}` names a source that does not exist.
    #[error("replacement string {{{index}}} refers to input source {index}, but there {} only {sources}", if *.sources == 1 { "is" } else { "are" })]
    NoSuchSource {
        /// The 1-based source number written.
        index: usize,
        /// How many sources there are.
        sources: usize,
    },
    /// GNU parallel's `{= perl expression =}`, which muster does not evaluate.
    #[error("'{{= ... =}}' (a Perl expression in GNU parallel) is not supported; compute the value in the command, e.g. with --shell")]
    PerlExpression,
}

/// A parsed command template. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    words: Vec<Vec<Piece>>,
    /// True when some word holds a replacement string; otherwise inputs are appended.
    substitutes: bool,
    /// The shell that runs the command line, when one does.
    shell: Option<OsString>,
    sources: usize,
}

impl Template {
    /// Parses `words` (the command and its arguments) for inputs with `sources` values each.
    pub fn parse(words: &[OsString], sources: usize) -> Result<Template, TemplateError> {
        Template::parse_named(words, sources, &[])
    }

    /// Like [`parse`](Self::parse), where `{NAME}` (and `{NAME.}`, `{NAME/}`…) also stands for
    /// the value whose position `names` gives (`--header`: the columns' names).
    pub fn parse_named(
        words: &[OsString],
        sources: usize,
        names: &[Vec<u8>],
    ) -> Result<Template, TemplateError> {
        if words.is_empty() {
            return Err(TemplateError::Empty);
        }
        if perl_across_words(words) {
            return Err(TemplateError::PerlExpression);
        }
        let words: Vec<Vec<Piece>> = words
            .iter()
            .map(|w| parse_word(w.as_encoded_bytes(), sources, names))
            .collect::<Result<_, _>>()?;
        let substitutes = words.iter().flatten().any(|p| !matches!(p, Piece::Literal(_)));
        Ok(Template { words, substitutes, shell: None, sources })
    }

    /// Runs the command line through `sh -c`, with substituted values quoted.
    pub fn shell(self, shell: bool) -> Self {
        self.shell_program(shell.then(|| OsString::from("sh")))
    }

    /// Runs the command line through `PROGRAM -c` (a POSIX shell: bash, dash, zsh…), with
    /// substituted values quoted; `None` runs the words as they are.
    pub fn shell_program(mut self, program: Option<OsString>) -> Self {
        self.shell = program;
        self
    }

    /// True when the command runs through a shell.
    pub fn is_shell(&self) -> bool {
        self.shell.is_some()
    }

    /// The program that will be executed (before substitution), e.g. for a lookup in `PATH`.
    pub fn program(&self) -> Option<OsString> {
        if let Some(shell) = &self.shell {
            return Some(shell.clone());
        }
        match self.words.first()?.as_slice() {
            [Piece::Literal(bytes)] => Some(OsString::from_vec(bytes.clone())),
            _ => None,
        }
    }

    /// The argv for one task: `values` holds one value per source.
    pub fn render(&self, values: &[Vec<u8>], seq: u64, slot: usize) -> Vec<OsString> {
        let quote = self.shell.is_some();
        let mut words: Vec<Vec<u8>> =
            self.words.iter().map(|pieces| render_word(pieces, values, seq, slot, quote)).collect();
        if !self.substitutes {
            for value in values {
                words.push(if quote { shell_quote(value) } else { value.clone() });
            }
        }
        if let Some(shell) = &self.shell {
            let script = words.join(&b' ');
            vec![shell.clone(), "-c".into(), OsString::from_vec(script)]
        } else {
            words.into_iter().map(OsString::from_vec).collect()
        }
    }

    /// The argv for a task holding several inputs of `per_input` values each (`-X`, `-m`).
    /// With `context` (`-X`) each word holding a replacement string is repeated once per input;
    /// otherwise (`-m`) a word that is just `{}` becomes one argument per value, and other words
    /// get the values joined by spaces. With no replacement strings every value is appended.
    pub fn render_many(
        &self,
        values: &[Vec<u8>],
        per_input: usize,
        context: bool,
        seq: u64,
        slot: usize,
    ) -> Vec<OsString> {
        if !self.substitutes {
            return self.render(values, seq, slot);
        }
        let quote = self.shell.is_some();
        let whole = [Piece::Value { source: None, transform: Transform::Whole }];
        let mut words: Vec<Vec<u8>> = Vec::new();
        for pieces in &self.words {
            let has_value = pieces.iter().any(|p| matches!(p, Piece::Value { .. }));
            if !has_value {
                words.push(render_word(pieces, values, seq, slot, quote));
            } else if context {
                for input in values.chunks(per_input.max(1)) {
                    words.push(render_word(pieces, input, seq, slot, quote));
                }
            } else if pieces.as_slice() == whole {
                words.extend(
                    values.iter().map(|v| render_word(pieces, std::slice::from_ref(v), seq, slot, quote)),
                );
            } else {
                words.push(render_word(pieces, values, seq, slot, quote));
            }
        }
        match &self.shell {
            Some(shell) => vec![shell.clone(), "-c".into(), OsString::from_vec(words.join(&b' '))],
            None => words.into_iter().map(OsString::from_vec).collect(),
        }
    }

    /// The words rendered and joined by spaces, with nothing appended and nothing quoted: a
    /// string such as `--tagstring`'s.
    pub fn render_line(&self, values: &[Vec<u8>], seq: u64, slot: usize) -> Vec<u8> {
        let words: Vec<Vec<u8>> =
            self.words.iter().map(|pieces| render_word(pieces, values, seq, slot, false)).collect();
        words.join(&b' ')
    }

    /// The command as a user would write it, for logs (`echo {}` for `echo {}`).
    pub fn display(&self) -> String {
        let words: Vec<String> = self.words.iter().map(|w| display_word(w)).collect();
        words.join(" ")
    }

    /// True when some word holds a replacement string (otherwise inputs are appended).
    pub fn substitutes(&self) -> bool {
        self.substitutes
    }

    /// Number of input sources the template was parsed for.
    pub fn sources(&self) -> usize {
        self.sources
    }
}

/// GNU parallel's docs write `{= s/a/b/ =}` unquoted, which the shell splits into words: a
/// `{=` left open in one word and an `=}` in a later one.
fn perl_across_words(words: &[OsString]) -> bool {
    let contains = |haystack: &[u8], needle: &[u8]| haystack.windows(2).any(|w| w == needle);
    let mut open = false;
    for word in words.iter().map(|w| w.as_encoded_bytes()) {
        if open && contains(word, b"=}") {
            return true;
        }
        if let Some(at) = word.windows(2).position(|w| w == b"{=") {
            open = !contains(&word[at + 2..], b"=}");
        }
    }
    false
}

fn parse_word(word: &[u8], sources: usize, names: &[Vec<u8>]) -> Result<Vec<Piece>, TemplateError> {
    if let Some(open) = word.windows(2).position(|w| w == b"{=") {
        if word[open + 2..].windows(2).any(|w| w == b"=}") {
            return Err(TemplateError::PerlExpression);
        }
    }
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let mut rest = word;
    while let Some(open) = rest.iter().position(|&b| b == b'{') {
        let replacement = match rest[open..].iter().position(|&b| b == b'}') {
            Some(len) => {
                parse_replacement(&rest[open + 1..open + len], sources, names)?.map(|p| (p, open + len))
            }
            None => None,
        };
        match replacement {
            Some((piece, close)) => {
                literal.extend_from_slice(&rest[..open]);
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
                rest = &rest[close + 1..];
            }
            None => {
                literal.extend_from_slice(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    literal.extend_from_slice(rest);
    if !literal.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// Parses the text between braces; `None` when it is not a replacement string.
fn parse_replacement(
    inner: &[u8],
    sources: usize,
    names: &[Vec<u8>],
) -> Result<Option<Piece>, TemplateError> {
    for (suffix, transform) in [
        (&b""[..], Transform::Whole),
        (b".", Transform::NoExtension),
        (b"//", Transform::Dirname),
        (b"/.", Transform::BasenameNoExtension),
        (b"/", Transform::Basename),
    ] {
        let Some(name) = inner.strip_suffix(suffix) else { continue };
        if let Some(index) = names.iter().position(|n| !n.is_empty() && n.as_slice() == name) {
            return Ok(Some(Piece::Value { source: Some(index), transform }));
        }
    }
    let digits = inner.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, suffix) = inner.split_at(digits);
    let transform = match suffix {
        b"" => Transform::Whole,
        b"." => Transform::NoExtension,
        b"/" => Transform::Basename,
        b"//" => Transform::Dirname,
        b"/." => Transform::BasenameNoExtension,
        b"#" if number.is_empty() => return Ok(Some(Piece::Seq)),
        b"%" if number.is_empty() => return Ok(Some(Piece::Slot)),
        _ => return Ok(None),
    };
    if number.is_empty() {
        return Ok(Some(Piece::Value { source: None, transform }));
    }
    let index: usize = match std::str::from_utf8(number).ok().and_then(|n| n.parse().ok()) {
        Some(index) if index >= 1 => index,
        _ => return Ok(None),
    };
    if index > sources {
        return Err(TemplateError::NoSuchSource { index, sources });
    }
    Ok(Some(Piece::Value { source: Some(index - 1), transform }))
}

fn render_word(pieces: &[Piece], values: &[Vec<u8>], seq: u64, slot: usize, quote: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        let value = match piece {
            Piece::Literal(bytes) => {
                out.extend_from_slice(bytes);
                continue;
            }
            Piece::Seq => seq.to_string().into_bytes(),
            Piece::Slot => slot.to_string().into_bytes(),
            Piece::Value { source: Some(index), transform } => {
                apply(values.get(*index).map_or(&[][..], Vec::as_slice), *transform)
            }
            Piece::Value { source: None, transform } => {
                let transformed: Vec<Vec<u8>> = values.iter().map(|v| apply(v, *transform)).collect();
                transformed.join(&b' ')
            }
        };
        if quote {
            out.extend_from_slice(&shell_quote(&value));
        } else {
            out.extend_from_slice(&value);
        }
    }
    out
}

fn display_word(pieces: &[Piece]) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Literal(bytes) => out.push_str(&String::from_utf8_lossy(bytes)),
            Piece::Seq => out.push_str("{#}"),
            Piece::Slot => out.push_str("{%}"),
            Piece::Value { source, transform } => {
                out.push('{');
                if let Some(index) = source {
                    out.push_str(&(index + 1).to_string());
                }
                out.push_str(match transform {
                    Transform::Whole => "",
                    Transform::NoExtension => ".",
                    Transform::Basename => "/",
                    Transform::Dirname => "//",
                    Transform::BasenameNoExtension => "/.",
                });
                out.push('}');
            }
        }
    }
    out
}

fn apply(value: &[u8], transform: Transform) -> Vec<u8> {
    match transform {
        Transform::Whole => value.to_vec(),
        Transform::NoExtension => without_extension(value).to_vec(),
        Transform::Basename => basename(value).to_vec(),
        Transform::Dirname => dirname(value),
        Transform::BasenameNoExtension => without_extension(basename(value)).to_vec(),
    }
}

fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => &path[slash + 1..],
        None => path,
    }
}

fn dirname(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/".to_vec(),
        Some(slash) => path[..slash].to_vec(),
        None => b".".to_vec(),
    }
}

/// Drops the last `.ext` of the basename; a leading dot (`.bashrc`) is not an extension.
fn without_extension(path: &[u8]) -> &[u8] {
    let base_start = path.iter().rposition(|&b| b == b'/').map_or(0, |s| s + 1);
    match path[base_start..].iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => &path[..base_start + dot],
        _ => path,
    }
}

/// Quotes `value` for `sh`: single quotes, with each `'` written as `'\''`.
pub fn shell_quote(value: &[u8]) -> Vec<u8> {
    // Words made only of these need no quotes: `$(( {} * 2 ))` keeps working for numbers.
    let plain =
        !value.is_empty() && value.iter().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(b));
    if plain {
        return value.to_vec();
    }
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(b'\'');
    for &b in value {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

#[cfg(test)]
mod tests;
