//! One joblog dialect: the same scripted outcomes, run by spawned tasks and by persistent
//! workers, are recorded in identical columns (apart from times, host, command and the bytes
//! sent to stdin), and identical to what the fake executor records in the library's tests.

mod util;

#[path = "../../tests/support/joblog_parity.rs"]
mod parity;

use util::*;

/// What each behaviour does, as a `case` arm over `$1` (a spawned task) or `$l` (a worker's
/// record); `flaky` remembers its first attempt in a marker file.
fn behave(var: &str, marker: &str) -> String {
    format!(
        "case {var} in ok) echo ok;; three) exit 3;; slow) sleep 30;; sig) kill -9 $$;; \
         flaky) if [ -e {marker} ]; then echo ok; else touch {marker}; exit 1; fi;; esac"
    )
}

#[test]
fn spawned_tasks_and_persistent_workers_record_the_same_outcomes_alike() {
    let sb = Sandbox::new();
    let mut inputs = vec![":::"];
    inputs.extend(parity::BEHAVIOURS);
    let common = ["-j", "1", "--retries", "1", "--timeout", "1", "--grace", "2"];

    let spawned_script = behave("$1", "spawned.flaky");
    let mut args = vec!["run", "--joblog", "spawned.log"];
    args.extend(common);
    args.extend(["sh", "-c", &spawned_script, "sh"]);
    args.extend(&inputs);
    let out = sb.run(&args, b"");
    assert_code(&out, 3);

    let worker_script = format!("while IFS= read -r l; do {}; done", behave("$l", "worker.flaky"));
    let mut args = vec!["run", "--persistent", "--joblog", "persistent.log"];
    args.extend(common);
    args.extend(["sh", "-c", &worker_script]);
    args.extend(&inputs);
    let out = sb.run(&args, b"");
    assert_code(&out, 3);

    let spawned = sb.read("spawned.log");
    let persistent = sb.read("persistent.log");
    assert_eq!(parity::columns(&spawned), parity::expected(), "spawned:\n{spawned}");
    assert_eq!(parity::columns(&persistent), parity::expected(), "persistent:\n{persistent}");
    // Receive (bytes of output) means the same too: `ok` answered "ok\n" in both.
    let receive = |log: &str| -> Vec<String> {
        log.lines().skip(2).map(|l| l.split('\t').nth(5).unwrap_or("").to_owned()).collect()
    };
    let (mut a, mut b) = (receive(&spawned), receive(&persistent));
    a.sort();
    b.sort();
    assert_eq!(a, b, "Receive columns\n{spawned}\n{persistent}");
}
