//! Named scenarios and properties for the joblog.

use super::*;
use proptest::prelude::*;

fn record(seq: u64, input: &[u8], outcome: RecordOutcome) -> Record {
    Record {
        seq,
        host: ":".into(),
        start: 1_700_000_000.25,
        runtime: 0.5,
        send: 0,
        receive: 12,
        exitval: if outcome == RecordOutcome::Done { 0 } else { 1 },
        signal: 0,
        command: b"echo x".to_vec(),
        outcome,
        attempt: 1,
        occurrence: 1,
        input: input.to_vec(),
        slot: 2,
    }
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("muster-journal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    dir
}

#[test]
fn header_starts_with_gnu_parallel_columns() {
    assert!(HEADER.starts_with("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\t"));
}

#[test]
fn write_then_resume_knows_done_and_failed() {
    let path = temp_path("roundtrip");
    let mut writer = JournalWriter::create(&path, "echo {}").expect("create");
    writer.write(&record(1, b"a", RecordOutcome::Done)).expect("write");
    writer.write(&record(2, b"b", RecordOutcome::Retry)).expect("write");
    writer.write(&record(2, b"b", RecordOutcome::Failed)).expect("write");
    drop(writer);
    let (_, resume) = JournalWriter::resume(&path, "echo {}").expect("resume");
    assert_eq!(resume.records, 3);
    assert!(resume.done.contains(&input_key(b"a", 1)));
    assert!(resume.failed.contains(&input_key(b"b", 1)));
    assert!(!resume.done.contains(&input_key(b"a", 2)), "a second occurrence is another task");
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_torn_last_line_is_ignored_and_cut_off() {
    let path = temp_path("torn");
    let mut writer = JournalWriter::create(&path, "cmd").expect("create");
    writer.write(&record(1, b"a", RecordOutcome::Done)).expect("write");
    drop(writer);
    let whole = std::fs::read(&path).expect("read");
    let torn = record(2, b"b", RecordOutcome::Done).to_line();
    std::fs::write(&path, [&whole[..], &torn.as_bytes()[..torn.len() / 2]].concat()).expect("write");
    let (mut writer, resume) = JournalWriter::resume(&path, "cmd").expect("resume");
    assert!(resume.torn_tail);
    assert_eq!(resume.records, 1);
    writer.write(&record(3, b"c", RecordOutcome::Done)).expect("append");
    drop(writer);
    let (_, again) = JournalWriter::resume(&path, "cmd").expect("resume again");
    assert_eq!((again.records, again.torn_tail), (2, false), "the torn half-line was cut off");
    let _ = std::fs::remove_file(path);
}

#[test]
fn damage_before_the_last_line_is_corruption() {
    let path = temp_path("corrupt");
    let mut writer = JournalWriter::create(&path, "cmd").expect("create");
    writer.write(&record(1, b"a", RecordOutcome::Done)).expect("write");
    writer.write(&record(2, b"b", RecordOutcome::Done)).expect("write");
    drop(writer);
    let text = std::fs::read_to_string(&path).expect("read").replacen("\t12\t", "\t13\t", 1);
    std::fs::write(&path, text).expect("write");
    let err = JournalWriter::resume(&path, "cmd").expect_err("corrupt");
    assert!(matches!(err, JournalError::Corrupt { line: 3, .. }), "{err}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_changed_command_is_refused() {
    let path = temp_path("changed");
    drop(JournalWriter::create(&path, "echo {}").expect("create"));
    let err = JournalWriter::resume(&path, "rm {}").expect_err("changed");
    assert!(err.to_string().contains("was written for the command 'echo {}', not 'rm {}'"), "{err}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_file_that_is_not_a_joblog_is_never_overwritten() {
    let path = temp_path("precious");
    std::fs::write(&path, "my thesis\n").expect("write");
    assert!(matches!(JournalWriter::create(&path, "cmd"), Err(JournalError::NotAJoblog { .. })));
    assert!(matches!(JournalWriter::resume(&path, "cmd"), Err(JournalError::NotAJoblog { .. })));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "my thesis\n");
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_checked_in_v1_joblog_is_still_read() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/joblog-v1.tsv");
    let copy = temp_path("v1");
    std::fs::copy(path, &copy).expect("copy");
    let (_, resume) = JournalWriter::resume(&copy, "echo {}").expect("v1 readable");
    assert_eq!(resume.records, 3);
    assert!(resume.done.contains(&input_key(b"tab\there", 1)));
    assert!(resume.done.contains(&input_key(b"\xff\xfe", 1)));
    assert!(resume.failed.contains(&input_key(b"b", 1)));
    let _ = std::fs::remove_file(copy);
}

proptest! {
    #[test]
    fn escaping_round_trips_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let escaped = escape(&bytes);
        prop_assert!(!escaped.contains('\t') && !escaped.contains('\n'));
        prop_assert_eq!(unescape(escaped.as_bytes()), bytes);
    }

    #[test]
    fn records_round_trip(input in proptest::collection::vec(any::<u8>(), 0..50), seq in 1u64..1_000_000, attempt in 1u32..9) {
        let mut rec = record(seq, &input, RecordOutcome::Retry);
        rec.attempt = attempt;
        let line = rec.to_line();
        prop_assert_eq!(Record::parse(line.trim_end_matches('\n').as_bytes()), Ok(rec));
    }

    #[test]
    fn any_cut_of_the_last_line_is_ignored(cut in 0usize..120) {
        let path = temp_path(&format!("cut-{cut}"));
        let mut writer = JournalWriter::create(&path, "cmd").expect("create");
        writer.write(&record(1, b"first", RecordOutcome::Done)).expect("write");
        drop(writer);
        let last = record(2, b"second input", RecordOutcome::Done).to_line();
        let cut = cut.min(last.len() - 1);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(&last.as_bytes()[..cut]);
        std::fs::write(&path, bytes).expect("write");
        let (_, resume) = JournalWriter::resume(&path, "cmd").expect("resume");
        prop_assert_eq!(resume.records, 1);
        prop_assert!(!resume.done.contains(&input_key(b"second input", 1)));
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn a_joblog_in_use_is_refused_until_its_run_ends() {
    let path = temp_path("locked");
    let writer = JournalWriter::create(&path, "echo {}").expect("create");
    for mode in [None, Some(ResumeMode::SkipFinished)] {
        let second = JournalWriter::open(&path, "echo {}", mode).expect_err("in use");
        assert!(matches!(second, JournalError::InUse { .. }), "{second}");
    }
    assert!(
        std::fs::read_to_string(&path).expect("read").starts_with(MAGIC),
        "the refused open did not truncate"
    );
    drop(writer);
    JournalWriter::resume(&path, "echo {}").expect("free once the first writer is gone");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn lost_records_are_run_again_by_either_resume() {
    let path = temp_path("lost");
    let mut writer = JournalWriter::create(&path, "echo {}").expect("create");
    writer.write(&record(1, b"a", RecordOutcome::Lost)).expect("write");
    drop(writer);
    let (_, resume) = JournalWriter::resume(&path, "echo {}").expect("resume");
    let key = record(1, b"a", RecordOutcome::Lost).key();
    assert!(!resume.done.contains(&key) && !resume.failed.contains(&key));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_version_1_joblog_is_read_and_resumed_in_its_own_format() {
    let path = temp_path("v1");
    let old = record(1, b"a", RecordOutcome::Done);
    let head = format!("{MAGIC}1\tcommand: cmd\n{HEADER_V1}\n");
    std::fs::write(&path, format!("{head}{}", old.to_line_in(1))).expect("write");
    let log = Joblog::read(&path).expect("read v1");
    assert_eq!((log.version, log.records.len(), log.records[0].slot), (1, 1, 0), "no slot column: 0");
    let (mut writer, resume) = JournalWriter::resume(&path, "cmd").expect("resume v1");
    assert!(resume.done.contains(&input_key(b"a", 1)));
    writer.write(&record(2, b"b", RecordOutcome::Done)).expect("append");
    drop(writer);
    let log = Joblog::read(&path).expect("read again");
    assert_eq!(log.records.len(), 2, "appended in version 1's columns, so it still reads");
    let _ = std::fs::remove_file(path);
}

#[test]
fn the_slot_survives_a_round_trip_and_a_future_version_is_refused() {
    let path = temp_path("v2");
    let mut writer = JournalWriter::create(&path, "cmd").expect("create");
    writer.write(&record(1, b"a", RecordOutcome::Done)).expect("write");
    drop(writer);
    let log = Joblog::read(&path).expect("read");
    assert_eq!((log.version, log.records[0].slot), (VERSION, 2));
    let text = std::fs::read_to_string(&path).expect("read").replacen(&format!("v{VERSION}"), "v99", 1);
    std::fs::write(&path, text).expect("write");
    let err = Joblog::read(&path).expect_err("unknown version");
    assert!(matches!(err, JournalError::UnknownVersion { .. }), "{err}");
    let _ = std::fs::remove_file(path);
}
