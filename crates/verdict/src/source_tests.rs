//! Consulting sources in order: who is asked, who decides, what another path reuses.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Fixed {
    name: &'static str,
    answer: Finding,
    by_path: bool,
    asked: AtomicUsize,
}

impl Source for Fixed {
    fn name(&self) -> &str {
        self.name
    }
    fn by_path(&self) -> bool {
        self.by_path
    }
    fn need(&self, path: Option<&str>) -> Need {
        Need {
            md5: self.by_path && path.is_some(),
            ..Need::default()
        }
    }
    fn judge(&self, s: &Subject<'_>) -> Finding {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.by_path && s.path != Some("/usr/bin/ls") {
            return Finding::unknown("not listed at this path".to_owned());
        }
        self.answer.clone()
    }
}

fn fixed(name: &'static str, answer: Finding, by_path: bool) -> Arc<Fixed> {
    Arc::new(Fixed {
        name,
        answer,
        by_path,
        asked: AtomicUsize::new(0),
    })
}

fn subject(path: Option<&str>) -> Subject<'_> {
    Subject {
        sha256: "00",
        md5: Some(&[0; 16]),
        sha1: None,
        path,
        size: 1,
        content: None,
    }
}

fn list(v: &[&Arc<Fixed>]) -> Sources {
    Sources::new(v.iter().map(|f| (*f).clone() as Arc<dyn Source>).collect())
}

#[test]
fn the_first_definite_answer_decides_and_known_passes_on() {
    let nsrl = fixed("nsrl", Finding::known("in the NSRL".to_owned()), false);
    let feeds = fixed("feeds", Finding::bad("abuse".to_owned()), false);
    let yara = fixed("yara", Finding::bad("r".to_owned()), false);
    let s = list(&[&nsrl, &feeds, &yara]);
    let f = s.consult(&subject(None), true, false);
    assert_eq!(f.deciding, Some(1));
    assert_eq!(f.each[0].as_ref().map(|f| f.opinion), Some(Opinion::Known));
    assert!(f.each[2].is_none(), "not asked after a decision");
    assert_eq!(yara.asked.load(Ordering::SeqCst), 0);
    let r = f.reputation();
    assert_eq!((r.bad, r.good, r.by_path), (Some(1), None, false));
    // `all`: everyone answers (fileinfo); the first definite one still decides.
    let f = s.consult(&subject(None), true, true);
    assert_eq!(f.deciding, Some(1));
    assert_eq!(yara.asked.load(Ordering::SeqCst), 1);
    assert_eq!(s.names(), vec!["nsrl", "feeds", "yara"]);
}

#[test]
fn per_path_sources_mark_the_findings_and_are_asked_again() {
    let dpkg = fixed("dpkg", Finding::good("package".to_owned()), true);
    let yara = fixed("yara", Finding::bad("r".to_owned()), false);
    let s = list(&[&dpkg, &yara]);
    let at_ls = s.consult(&subject(Some("/usr/bin/ls")), true, false);
    assert_eq!((at_ls.deciding, at_ls.by_path), (Some(0), true));
    assert_eq!(at_ls.reputation().good, Some(0));
    // Another path needs the scan, which was not done for /usr/bin/ls: read again.
    assert!(s.rejudge(&at_ls, &subject(Some("/tmp/ls")), true).is_none());
    // Judged first at /tmp/ls (scanned), it can be judged at /usr/bin/ls from the cache.
    let at_tmp = s.consult(&subject(Some("/tmp/ls")), true, false);
    assert_eq!(at_tmp.deciding, Some(1));
    assert!(at_tmp.by_path, "dpkg was asked before yara decided");
    let again = s
        .rejudge(&at_tmp, &subject(Some("/usr/bin/ls")), true)
        .expect("no new read needed");
    assert_eq!(again.deciding, Some(0));
    assert_eq!(
        yara.asked.load(Ordering::SeqCst),
        1,
        "scan reused, not redone"
    );
    // Without the MD5 a per-path source needs, the file must be read again.
    let no_md5 = Subject {
        md5: None,
        ..subject(Some("/usr/bin/ls"))
    };
    assert!(s.rejudge(&at_tmp, &no_md5, true).is_none());
}

#[test]
fn failed_answers_limit_how_long_the_findings_hold() {
    let remote = fixed("hashlookup", Finding::failed("timed out".into()), false);
    let known = fixed(
        "nsrl",
        Finding::known(None).valid_for(std::time::Duration::from_secs(3600)),
        false,
    );
    let f = list(&[&known, &remote]).consult(&subject(None), true, false);
    assert_eq!(f.valid_for(), Some(RETRY_FAILED), "the shortest limit");
    assert_eq!(f.deciding, None);
    assert_eq!(Findings::default().valid_for(), None);
}

#[test]
fn without_trust_only_bad_decides_and_per_path_sources_are_skipped() {
    let dpkg = fixed("dpkg", Finding::good("package".to_owned()), true);
    let nsrl = fixed("nsrl", Finding::good("trusted".to_owned()), false);
    let yara = fixed("yara", Finding::bad("r".to_owned()), false);
    let s = list(&[&dpkg, &nsrl, &yara]);
    let f = s.consult(&subject(Some("/usr/bin/ls")), false, false);
    assert_eq!((f.deciding, f.by_path), (Some(2), false));
    assert!(f.each[0].is_none(), "dpkg only vouches: not asked");
    assert!(!s.need(Some("/usr/bin/ls"), false).md5);
    // fileinfo asks everyone and works out each mode from the same answers.
    let all = s.consult(&subject(Some("/usr/bin/ls")), true, true);
    assert_eq!(all.reputation().good, Some(0));
    assert_eq!(all.reputation_without_trust().bad, Some(2));
}
