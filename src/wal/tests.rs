//! The input log's files: appends, torn tails, readers that never pass the head, trimming.

use std::io::Write;

use super::record::{self, CommandFact};
use super::*;

fn cmd(i: u64) -> CommandFact {
    CommandFact::MaintenanceEnd {
        id: format!("s-M{i}"),
    }
}

/// Appends records `n` commands as one batch; returns their lsns.
fn append(w: &mut Writer, n: u64, arrival: i64) -> std::ops::Range<u64> {
    let first = w.next_lsn();
    let mut buf = Vec::new();
    for i in 0..n {
        record::encode_command(&mut buf, first + i, arrival, &cmd(first + i));
    }
    w.append(&buf, n, arrival).unwrap();
    first..first + n
}

fn read_all(r: &mut Reader, head: &Head) -> Vec<u64> {
    let mut v = Vec::new();
    while let Some(body) = r.next(head).unwrap() {
        v.push(record::decode(body).unwrap().lsn);
    }
    v
}

#[test]
fn records_survive_a_reopen_and_readers_stop_at_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), 0, 1 << 20, 10).unwrap().writer;
    assert_eq!(append(&mut w, 3, 100), 1..4);
    let head = w.head();
    assert_eq!(append(&mut w, 2, 200), 4..6);
    // A reader given the older head sees only what was committed then.
    let mut r = Reader::open(dir.path(), 1);
    assert_eq!(read_all(&mut r, &head), vec![1, 2, 3]);
    assert_eq!(read_all(&mut r, &w.head()), vec![4, 5]);
    drop(w);
    let o = Writer::open(dir.path(), 0, 1 << 20, 3).unwrap();
    assert_eq!(o.truncated_bytes, 0);
    assert_eq!(o.recent.len(), 3);
    assert_eq!(o.writer.next_lsn(), 6);
    let mut r = Reader::open(dir.path(), 2);
    assert_eq!(read_all(&mut r, &o.writer.head()), vec![2, 3, 4, 5]);
}

#[test]
fn a_torn_tail_is_cut_off_counted_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), 0, 1 << 20, 10).unwrap().writer;
    append(&mut w, 4, 100);
    drop(w);
    let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
    let good = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of the next record: its header and half its body.
    let mut next = Vec::new();
    record::encode_command(&mut next, 5, 300, &cmd(5));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&next[..next.len() / 2]).unwrap();
    drop(f);
    let o = Writer::open(dir.path(), 0, 1 << 20, 10).unwrap();
    assert_eq!(o.truncated_bytes, (next.len() / 2) as u64);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
    let mut w = o.writer;
    assert_eq!(append(&mut w, 1, 400), 5..6);
    let mut r = Reader::open(dir.path(), 1);
    assert_eq!(read_all(&mut r, &w.head()), vec![1, 2, 3, 4, 5]);

    // A flipped bit in the last record: its checksum fails, it is cut off too.
    drop(w);
    let mut data = std::fs::read(&path).unwrap();
    let n = data.len();
    data[n - 2] ^= 0x40;
    std::fs::write(&path, &data).unwrap();
    let o = Writer::open(dir.path(), 0, 1 << 20, 10).unwrap();
    assert!(o.truncated_bytes > 0);
    assert_eq!(o.writer.next_lsn(), 5);
}

#[test]
fn segments_rotate_and_are_trimmed_only_when_consumed_and_old_or_over_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: every batch starts a new one.
    let mut w = Writer::open(dir.path(), 0, 1, 10).unwrap().writer;
    for i in 0..5 {
        append(&mut w, 2, 1_000 * (i + 1));
    }
    assert_eq!(w.segment_count(), 5);
    // Nothing consumed: retention alone deletes nothing.
    assert_eq!(w.trim(1, i64::MAX, u64::MAX).segments, 0);
    // Consumed up to lsn 5 (1..=4 done), all old: the first two segments go.
    let t = w.trim(5, i64::MAX, u64::MAX);
    assert_eq!((t.segments, t.dropped, t.first_kept), (2, 0, 5));
    // Consumed but recent (retention): kept.
    assert_eq!(w.trim(11, 0, u64::MAX).segments, 0);
    // Over the bound: the oldest go whether consumed or not, and the unconsumed are reported.
    let per = w.bytes() / 3;
    let t = w.trim(5, 0, per);
    assert_eq!(t.segments, 2);
    assert_eq!(t.dropped, 4);
    assert_eq!((t.dropped_from_ms, t.dropped_to_ms), (3_000, 5_000));
    assert_eq!(t.first_kept, 9);
    // A reader behind the first kept record jumps and says how many it skipped.
    let mut r = Reader::open(dir.path(), 5);
    assert_eq!(read_all(&mut r, &w.head()), vec![9, 10]);
    assert_eq!(r.take_skipped(), 4);
}

#[test]
fn a_deleted_log_starts_after_the_consumers_positions() {
    let dir = tempfile::tempdir().unwrap();
    let o = Writer::open(dir.path(), 500, 1 << 20, 10).unwrap();
    assert_eq!(o.writer.next_lsn(), 500);
    let mut w = o.writer;
    assert_eq!(append(&mut w, 1, 1), 500..501);
    let mut r = Reader::open(dir.path(), 0);
    assert_eq!(read_all(&mut r, &w.head()), vec![500]);
}

#[test]
fn positions_are_written_atomically_and_a_missing_one_reads_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(STORE_POS_FILE);
    assert_eq!(read_position(&p), 0);
    write_position(&p, 12345).unwrap();
    assert_eq!(read_position(&p), 12345);
}

#[test]
fn durable_wakes_a_waiter_when_the_log_reaches_its_lsn_and_refuses_once_closed_short() {
    let d = std::sync::Arc::new(Durable::new(5));
    let wait = |d: &Durable, lsn| d.wait_for(lsn, std::time::Duration::from_secs(60));
    assert_eq!(
        wait(&d, 5),
        Waited::Durable,
        "what is durable already needs no wait"
    );
    let waiter = {
        let d = d.clone();
        std::thread::spawn(move || wait(&d, 9))
    };
    d.advance(7);
    d.advance(6); // never backwards
    assert_eq!(d.next_lsn(), 7);
    d.advance(9);
    assert_eq!(
        waiter.join().expect("waiter"),
        Waited::Durable,
        "woken once lsn 9 is durable"
    );
    assert_eq!(
        d.wait_for(20, std::time::Duration::ZERO),
        Waited::TimedOut,
        "not durable yet, not closed"
    );
    let short = {
        let d = d.clone();
        std::thread::spawn(move || wait(&d, 20))
    };
    d.close();
    assert_eq!(
        short.join().expect("waiter"),
        Waited::Closed,
        "closed before lsn 20 was durable"
    );
    assert_eq!(
        wait(&d, 9),
        Waited::Durable,
        "what was durable stays so after the close"
    );
    assert_eq!(
        d.wait_for(30, std::time::Duration::ZERO),
        Waited::Closed,
        "closed: no waiting at all"
    );
}
