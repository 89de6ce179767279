//! Events per second per core of the `script` transform on a reference
//! script — parse a log line with a regex, drop debug lines, add two
//! fields — against the same logic in plain Rust, in the same run, on the
//! same events. Run with `scripts/bench-transforms` (or `cargo bench -p
//! weir-plugins --bench transforms -- [EVENTS] [RUNS]`). Times are the
//! thread's CPU time, so other work on the machine does not move them.

use std::time::Duration;

use regex::Regex;
use weir_core::event::{Event, Metadata, Value};
use weir_plugins::transforms::script::ScriptConfig;
use weir_plugins::{Emitter, Transform, TransformConfig, TransformContext};

const PATTERN: &str =
    r"^(?P<ts>\S+) level=(?P<level>\w+) device=(?P<device>\S+) temp=(?P<temp>\S+)";

const SCRIPT: &str = r#"
let m = parse_regex(event.message, "^(?P<ts>\\S+) level=(?P<level>\\w+) device=(?P<device>\\S+) temp=(?P<temp>\\S+)");
if m == () || m.level == "debug" { return (); }
event.level = m.level;
event.device = m.device;
event
"#;

/// The second reference: the example of issue 7 (key-value parsing, a
/// filter, a conversion).
const EXAMPLE: &str = r#"
let f = parse_key_value(event.message);
if f.level == "debug" { return (); }
event.device = f.device;
event.temp = to_float(f.temp);
event
"#;

/// A first statement outside the native fast path's subset (an array
/// literal; plugins/src/transforms/script/fast.rs): the script after it
/// runs on rhai alone.
const ON_RHAI: &str = "let n = [];";

/// The reference logic in plain Rust.
struct Native {
    re: Regex,
}

impl Transform for Native {
    fn process(&mut self, mut event: Event, out: &mut Emitter) {
        let Some(Value::String(msg)) = event.fields.get("message") else {
            return;
        };
        let Some(c) = self.re.captures(msg) else {
            return;
        };
        let level = c.name("level").map_or("", |m| m.as_str());
        if level == "debug" {
            return;
        }
        let level = Value::String(level.to_owned());
        let device = Value::String(c.name("device").map_or("", |m| m.as_str()).to_owned());
        event.fields.insert("level", level);
        event.fields.insert("device", device);
        out.emit(event);
    }
}

fn events(n: usize) -> Vec<Event> {
    let levels = ["info", "warn", "debug", "info"];
    (0..n)
        .map(|i| {
            let line = format!(
                "2024-05-01T12:00:{:02}Z level={} device=d{} temp={}.{} msg=\"reading from the field bus\"",
                i % 60,
                levels[i % 4],
                i % 97,
                i % 50,
                i % 10
            );
            Event::from_message_at(line, Metadata::default(), 0)
        })
        .collect()
}

/// CPU time this thread has used: what the measurements count, so other
/// work on a shared machine does not move them (wall time does).
#[derive(Clone, Copy)]
struct Instant(Duration);

impl Instant {
    fn now() -> Instant {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        Instant(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }

    fn elapsed(&self) -> Duration {
        Instant::now().0.saturating_sub(self.0)
    }
}

/// Events per second (of this thread's CPU time) through `t`, in batches
/// as the runtime hands them over.
fn measure(t: &mut dyn Transform, input: &[Event]) -> (f64, usize) {
    let start = Instant::now();
    let mut kept = 0;
    for batch in input.chunks(1024) {
        let mut out = Emitter::new("bench", &[], 0);
        for e in batch {
            t.process(e.clone(), &mut out);
        }
        kept += out.take().0.iter().map(|e| e.events.len()).sum::<usize>();
    }
    (input.len() as f64 / start.elapsed().as_secs_f64(), kept)
}

/// Events per second of cloning alone (the input copy both sides pay).
fn baseline(input: &[Event]) -> f64 {
    let start = Instant::now();
    let mut n = 0;
    for e in input {
        let c = std::hint::black_box(e.clone());
        n += c.fields.len();
    }
    std::hint::black_box(n);
    input.len() as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Where the script's time goes: the reference script built up step by
/// step. Scripts of the common shape run on the native fast path; `()`,
/// the cheap function call and the `let n = 0;` line run on rhai.
fn breakdown(input: &[Event]) {
    let regex = format!("let m = parse_regex(event.message, {PATTERN:?});");
    let steps = [
        (
            "drop every event (convert the event in, run, nothing out)",
            "()".to_owned(),
        ),
        (
            "return the event unchanged (+ convert it back out)",
            "event".to_owned(),
        ),
        ("+ parse_regex", format!("{regex}\nevent")),
        (
            "+ drop debug",
            format!("{regex}\nif m == () || m.level == \"debug\" {{ return (); }}\nevent"),
        ),
        ("+ add two fields (the reference script)", SCRIPT.to_owned()),
        (
            "the reference script on rhai alone (starts with `let n = [];`)",
            format!("{ON_RHAI}{SCRIPT}"),
        ),
        (
            "(alone) set one constant field",
            "event.level = \"x\";\nevent".to_owned(),
        ),
        (
            "(alone) set two constant fields",
            "event.level = \"x\";\nevent.device = \"y\";\nevent".to_owned(),
        ),
        (
            "(alone) read a field into a variable",
            "let l = event.message;\nevent".to_owned(),
        ),
        (
            "(alone) call a cheap function",
            "let l = crc32(\"abc\");\nevent".to_owned(),
        ),
    ];
    for (what, source) in steps {
        let mut t = build_script(&source);
        let (eps, _) = measure(t.as_mut(), input);
        println!("  {:>8.2} µs/event  {what}", 1e6 / eps);
    }
    let mut native = Native {
        re: Regex::new(PATTERN).expect("pattern"),
    };
    let (eps, _) = measure(&mut native, input);
    println!(
        "  {:>8.2} µs/event  native: the whole reference logic",
        1e6 / eps
    );
    let re = Regex::new(PATTERN).expect("pattern");
    let start = Instant::now();
    let mut n = 0;
    for e in input {
        if let Some(Value::String(m)) = e.fields.get("message") {
            n += re.captures(m).map_or(0, |c| c.len());
        }
    }
    std::hint::black_box(n);
    println!(
        "  {:>8.2} µs/event  native: the regex alone",
        start.elapsed().as_secs_f64() * 1e6 / input.len() as f64
    );
}

/// The issue's example script with the fast path against the same script
/// on rhai alone, interleaved, `runs` times.
fn example(input: &[Event], runs: usize) {
    let mut fast = build_script(EXAMPLE);
    let mut rhai = build_script(&format!("{ON_RHAI}{EXAMPLE}"));
    let (_, kf) = measure(fast.as_mut(), &input[..10_000]);
    let (_, kr) = measure(rhai.as_mut(), &input[..10_000]);
    assert_eq!(kf, kr, "both keep the same events");
    let (mut f, mut r, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (fast_eps, _) = measure(fast.as_mut(), input);
        let (rhai_eps, _) = measure(rhai.as_mut(), input);
        f.push(fast_eps);
        r.push(rhai_eps);
        c.push(fast_eps / rhai_eps);
    }
    println!(
        "issue 7 example, median of {runs} runs, {} events, 1 core: fast path {:.0} ev/s ({:.2} µs/event), rhai alone {:.0} ev/s ({:.2} µs/event), speed-up {:.2}x",
        input.len(),
        median(f.clone()),
        1e6 / median(f),
        median(r.clone()),
        1e6 / median(r),
        median(c)
    );
}

fn build_script(source: &str) -> Box<dyn Transform> {
    let cfg = ScriptConfig {
        source: Some(source.to_owned()),
        file: None,
        outputs: Vec::new(),
        state: false,
        limits: Default::default(),
        log_rate: 10,
    };
    let ctx = TransformContext {
        id: "bench".into(),
        metrics: Default::default(),
    };
    cfg.build(ctx).expect("the script compiles")
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    // `-- script SOURCE`: one script alone, five times (for a profiler).
    if let Some(i) = argv.iter().position(|a| a == "script") {
        let source = argv.get(i + 1).expect("script SOURCE");
        let input = events(100_000);
        let mut t = build_script(source);
        for _ in 0..5 {
            let (eps, _) = measure(t.as_mut(), &input);
            println!("  {:>8.2} µs/event", 1e6 / eps);
        }
        return;
    }
    if std::env::args().any(|a| a == "example") {
        example(&events(100_000), 7);
        return;
    }
    if std::env::args().any(|a| a == "breakdown") {
        breakdown(&events(100_000));
        return;
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(200_000);
    let runs = args.get(1).copied().unwrap_or(5);
    let input = events(n);
    let mut script = build_script(SCRIPT);
    let mut native = Native {
        re: Regex::new(PATTERN).expect("pattern"),
    };
    // Warm up both (regex caches, allocator) and check they agree.
    let (_, ks) = measure(script.as_mut(), &input[..n.min(10_000)]);
    let (_, kn) = measure(&mut native, &input[..n.min(10_000)]);
    assert_eq!(
        ks, kn,
        "the script and the native code keep the same events"
    );
    let (mut s, mut r, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let (script_eps, _) = measure(script.as_mut(), &input);
        let (native_eps, _) = measure(&mut native, &input);
        let clone_eps = baseline(&input);
        println!(
            "run {run}: script {script_eps:>10.0} ev/s   native {native_eps:>10.0} ev/s   ratio {:.2}x   (clone alone {clone_eps:.0} ev/s)",
            native_eps / script_eps
        );
        s.push(script_eps);
        r.push(native_eps);
        c.push(native_eps / script_eps);
    }
    println!(
        "median of {runs} runs, {n} events, 1 core: script {:.0} ev/s, native {:.0} ev/s, native/script {:.2}x (target: at most 3x)",
        median(s),
        median(r),
        median(c)
    );
}
