//! `--results`: every task's output kept apart, in GNU parallel's layouts. A folder gets one
//! folder per task, named by its input values (`DIR/1/<value 1>/2/<value 2>/` holding
//! `stdout`, `stderr` and `seq`); a name ending in `.csv` or `.json` gets one file with a row
//! (or a JSON line) per task: the joblog's columns, the values, and the output.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::capture::Capture;
use crate::journal::Record;

/// Where `--results` writes.
pub(crate) enum Results {
    Folder(PathBuf),
    Csv { file: BufWriter<File>, header_for: Option<usize> },
    Json(BufWriter<File>),
}

impl Results {
    /// Results at `path`: a CSV or JSON file by its extension, else a folder.
    pub(crate) fn open(path: &Path) -> io::Result<Results> {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        Ok(match extension.as_deref() {
            Some("csv") => Results::Csv { file: BufWriter::new(File::create(path)?), header_for: None },
            Some("json") => Results::Json(BufWriter::new(File::create(path)?)),
            _ => {
                fs::create_dir_all(path)?;
                Results::Folder(path.to_owned())
            }
        })
    }

    /// Writes one finished task's output.
    pub(crate) fn write(
        &mut self,
        record: &Record,
        values: &[Vec<u8>],
        stdout: &mut Capture,
        stderr: &mut Capture,
    ) -> io::Result<()> {
        match self {
            Results::Folder(root) => {
                let mut dir = root.clone();
                for (index, value) in values.iter().enumerate() {
                    dir.push((index + 1).to_string());
                    dir.push(folder_name(value));
                }
                fs::create_dir_all(&dir)?;
                stdout.write_to(&mut BufWriter::new(File::create(dir.join("stdout"))?), None)?;
                stderr.write_to(&mut BufWriter::new(File::create(dir.join("stderr"))?), None)?;
                fs::write(dir.join("seq"), record.seq.to_string())
            }
            Results::Csv { file, header_for } => {
                if header_for.is_none() {
                    let columns: Vec<String> = (1..=values.len()).map(|i| format!("V{i}")).collect();
                    writeln!(
                        file,
                        "Seq,Host,Starttime,JobRuntime,Send,Receive,Exitval,Signal,Command,{},Stdout,Stderr",
                        columns.join(",")
                    )?;
                    *header_for = Some(values.len());
                }
                let mut fields = head_fields(record);
                fields.extend(values.iter().map(|v| String::from_utf8_lossy(v).into_owned()));
                fields.push(String::from_utf8_lossy(&bytes_of(stdout)?).into_owned());
                fields.push(String::from_utf8_lossy(&bytes_of(stderr)?).into_owned());
                let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                writeln!(file, "{}", row.join(","))?;
                file.flush()
            }
            Results::Json(file) => {
                let text = |bytes: &[u8]| serde_like_string(&String::from_utf8_lossy(bytes));
                let values: Vec<String> = values.iter().map(|v| text(v)).collect();
                writeln!(
                    file,
                    "{{ \"Seq\": {}, \"Host\": {}, \"Starttime\": {:.3}, \"JobRuntime\": {:.3}, \"Send\": {}, \"Receive\": {}, \"Exitval\": {}, \"Signal\": {}, \"Command\": {}, \"V\": [ {} ], \"Stdout\": {}, \"Stderr\": {} }}",
                    record.seq,
                    text(record.host.as_bytes()),
                    record.start,
                    record.runtime,
                    record.send,
                    record.receive,
                    record.exitval,
                    record.signal,
                    text(&record.command),
                    values.join(", "),
                    text(&bytes_of(stdout)?),
                    text(&bytes_of(stderr)?),
                )?;
                file.flush()
            }
        }
    }
}

/// A value as one folder name: `/` becomes `\_` and `\` becomes `\\` (GNU parallel's
/// escaping), an empty value `\e`, and long ones are cut to what a file name may hold.
fn folder_name(value: &[u8]) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let mut name = Vec::with_capacity(value.len());
    for &b in value {
        match b {
            b'/' => name.extend_from_slice(b"\\_"),
            b'\\' => name.extend_from_slice(b"\\\\"),
            b'\0' => name.extend_from_slice(b"\\0"),
            _ => name.push(b),
        }
    }
    match name.as_slice() {
        b"" => name = b"\\e".to_vec(),
        b"." | b".." => name.insert(0, b'\\'),
        _ => {}
    }
    name.truncate(255);
    std::ffi::OsString::from_vec(name)
}

fn head_fields(record: &Record) -> Vec<String> {
    vec![
        record.seq.to_string(),
        record.host.clone(),
        format!("{:.3}", record.start),
        format!("{:.3}", record.runtime),
        record.send.to_string(),
        record.receive.to_string(),
        record.exitval.to_string(),
        record.signal.to_string(),
        String::from_utf8_lossy(&record.command).into_owned(),
    ]
}

fn bytes_of(capture: &mut Capture) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    capture.write_to(&mut bytes, None)?;
    Ok(bytes)
}

/// A CSV field, quoted when it holds a comma, a quote, a space or a line break (as GNU
/// parallel writes them).
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r', ' ', '\t']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// A JSON string literal.
fn serde_like_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_escape_what_a_path_cannot_hold() {
        assert_eq!(folder_name(b"a/b"), "a\\_b");
        assert_eq!(folder_name(b"x\\y"), "x\\\\y");
        assert_eq!(folder_name(b""), "\\e");
        assert_eq!(folder_name(b".."), "\\..");
        assert_eq!(folder_name(&[b'z'; 300]).len(), 255);
    }

    #[test]
    fn csv_and_json_quote_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,\"b\"\n"), "\"a,\"\"b\"\"\n\"");
        assert_eq!(serde_like_string("a\"\\\n"), "\"a\\\"\\\\\\u000a\"");
    }
}
