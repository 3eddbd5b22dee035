//! `fanout status ID --watch`: polls `GET /v1/status/{id}` until the request ends. On a
//! terminal, one bar per channel (settled of total, with delivered, failed and pending) under
//! a line with the state, the overall rate and the ETA; otherwise one plain line per change
//! (or one JSON object per line with `--json`), so a log or a pipe gets text it can read.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fanout_domain::Channel;
use fanout_domain::receipt::{ChannelCounts, RequestState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::client::{Api, Failure};
use crate::requests::{self, Status};

/// How long the API may stay unreachable before the watch gives up (exit 3).
const UNAVAILABLE_FOR: Duration = Duration::from_secs(30);

/// Follows the request until it ends: `Ok(0)` when it completed, [`Failure::Ended`] (exit 4)
/// when it failed or was cancelled.
pub async fn watch(
    api: &Api,
    request_id: &str,
    interval_ms: u64,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut view = if json {
        View::JsonLines { last: None }
    } else if std::io::stdout().is_terminal() {
        View::Bars(Bars::new())
    } else {
        View::Lines { last: None }
    };
    let interval = Duration::from_millis(interval_ms.max(50));
    let mut rate = Rate::new();
    let mut failing_since: Option<Instant> = None;
    loop {
        match requests::fetch(api, request_id).await {
            Ok(value) => {
                failing_since = None;
                let status = Status::from_json(&value)?;
                let speed = rate.observe(&status.totals);
                view.show(&status, &value, &speed);
                if status.state.is_terminal() {
                    view.finish(&status, &speed);
                    return match status.state {
                        RequestState::Completed => Ok(ExitCode::SUCCESS),
                        other => Err(Failure::Ended {
                            request_id: status.request_id,
                            state: other.as_str().to_owned(),
                        }),
                    };
                }
            }
            // A blip (an API restart, a timeout) should not end a long watch.
            Err(Failure::Unavailable(why)) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= UNAVAILABLE_FOR {
                    return Err(Failure::Unavailable(why));
                }
                eprintln!("warning: {why} (retrying)");
            }
            Err(other) => return Err(other),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Settled deliveries per second since the watch began, and what that leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    /// Seconds since the watch began.
    pub elapsed: f64,
    /// Deliveries settled per second over that time (None before anything moved).
    pub per_second: Option<f64>,
    /// Seconds until the pending ones settle at that rate.
    pub eta_seconds: Option<f64>,
}

/// Measures the overall rate from the first observation on.
#[derive(Debug)]
pub struct Rate {
    started: Instant,
    first_settled: Option<u64>,
}

impl Rate {
    /// Starts the clock.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            first_settled: None,
        }
    }

    /// Takes the latest totals and answers the speed so far.
    pub fn observe(&mut self, totals: &ChannelCounts) -> Speed {
        let elapsed = self.started.elapsed().as_secs_f64();
        let settled = settled(totals);
        let first = *self.first_settled.get_or_insert(settled);
        speed(elapsed, settled.saturating_sub(first), totals.pending)
    }
}

impl Default for Rate {
    fn default() -> Self {
        Self::new()
    }
}

/// The speed of `moved` deliveries in `elapsed` seconds with `pending` to go.
pub fn speed(elapsed: f64, moved: u64, pending: u64) -> Speed {
    let per_second = (moved > 0 && elapsed > 0.0).then(|| moved as f64 / elapsed);
    Speed {
        elapsed,
        per_second,
        eta_seconds: per_second.map(|r| pending as f64 / r),
    }
}

/// Instances that reached a final status: delivered, failed, suppressed or cancelled.
pub fn settled(c: &ChannelCounts) -> u64 {
    c.total.saturating_sub(c.pending)
}

/// One channel's figures as the bars and lines show them.
pub fn channel_text(c: &ChannelCounts) -> String {
    let mut text = format!(
        "delivered {}, failed {}, pending {}",
        c.delivered, c.failed, c.pending
    );
    if c.suppressed > 0 {
        text.push_str(&format!(", suppressed {}", c.suppressed));
    }
    if c.cancelled > 0 {
        text.push_str(&format!(", cancelled {}", c.cancelled));
    }
    if c.deferred > 0 {
        text.push_str(&format!(
            " ({} of them deferred by quiet hours)",
            c.deferred
        ));
    }
    text
}

/// The state with what holds it, e.g. `running (paused)`.
pub fn state_text(s: &Status) -> String {
    let mut text = s.state.as_str().to_owned();
    if s.paused && !s.state.is_terminal() {
        text.push_str(" (paused)");
    }
    if let Some(cap) = s.rate_per_second.filter(|_| !s.state.is_terminal()) {
        text.push_str(&format!(" (capped at {cap}/s)"));
    }
    text
}

/// The rate and ETA, e.g. `12.5/s, eta 4s`.
pub fn speed_text(speed: &Speed) -> String {
    match (speed.per_second, speed.eta_seconds) {
        (Some(r), Some(eta)) => format!("{r:.1}/s, eta {}", duration_text(eta)),
        _ => "-/s, eta -".to_owned(),
    }
}

fn duration_text(seconds: f64) -> String {
    let s = seconds.ceil() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The plain line for one update: elapsed time, state, each channel, the total, rate and ETA.
pub fn line(s: &Status, speed: &Speed) -> String {
    format!("[{:>6.1}s] {}", speed.elapsed, counts_text(s)) + &format!("  {}", speed_text(speed))
}

/// Everything an update shows except time and rate: what tells one update from the next.
fn counts_text(s: &Status) -> String {
    let mut text = state_text(s);
    for (channel, c) in &s.channels {
        text.push_str(&format!(
            "  {} {}/{} ({})",
            channel.as_str(),
            settled(c),
            c.total,
            channel_text(c)
        ));
    }
    text.push_str(&format!(
        "  total {}/{}",
        settled(&s.totals),
        s.totals.total
    ));
    text
}

enum View {
    Bars(Bars),
    Lines { last: Option<String> },
    JsonLines { last: Option<String> },
}

impl View {
    fn show(&mut self, s: &Status, value: &Value, speed: &Speed) {
        match self {
            View::Bars(bars) => bars.show(s, speed),
            View::Lines { last } => {
                let key = counts_text(s);
                if last.as_deref() != Some(key.as_str()) {
                    println!("{}", line(s, speed));
                    *last = Some(key);
                }
            }
            View::JsonLines { last } => {
                let text = value.to_string();
                if last.as_deref() != Some(text.as_str()) {
                    println!("{text}");
                    *last = Some(text);
                }
            }
        }
    }

    fn finish(&mut self, s: &Status, speed: &Speed) {
        let summary = format!(
            "request {} {} after {:.1}s: {}",
            s.request_id,
            s.state.as_str(),
            speed.elapsed,
            channel_text(&s.totals)
        );
        match self {
            View::Bars(bars) => {
                bars.finish();
                println!("{summary}");
            }
            View::Lines { .. } => println!("{summary}"),
            // Stdout stays one JSON object per line.
            View::JsonLines { .. } => eprintln!("{summary}"),
        }
    }
}

/// The terminal view: a header line and one bar per channel, added as channels appear (a
/// tree request has none until its audience is resolved).
struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    channels: BTreeMap<Channel, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let style =
            ProgressStyle::with_template("  {prefix:<7} [{bar:30}] {pos:>5}/{len:<5} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        Self {
            multi,
            header,
            channels: BTreeMap::new(),
            style,
        }
    }

    fn show(&mut self, s: &Status, speed: &Speed) {
        self.header.set_message(format!(
            "{}  {}  total {}/{}  {}",
            s.request_id,
            state_text(s),
            settled(&s.totals),
            s.totals.total,
            speed_text(speed)
        ));
        self.header.tick();
        for (channel, c) in &s.channels {
            let bar = self.channels.entry(*channel).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(c.total));
                bar.set_style(self.style.clone());
                bar.set_prefix(channel.as_str());
                bar
            });
            bar.set_length(c.total);
            bar.set_position(settled(c));
            bar.set_message(channel_text(c));
        }
    }

    fn finish(&mut self) {
        self.header.finish();
        for bar in self.channels.values() {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: u64, delivered: u64, failed: u64, pending: u64) -> ChannelCounts {
        ChannelCounts {
            total,
            delivered,
            failed,
            suppressed: total - delivered - failed - pending,
            cancelled: 0,
            pending,
            deferred: 0,
        }
    }

    fn status(state: RequestState, email: ChannelCounts) -> Status {
        Status {
            request_id: "ntf-t-1".into(),
            state,
            template_id: "welcome".into(),
            path: "tree".into(),
            recipients: email.total,
            excluded: 0,
            paused: false,
            rate_per_second: None,
            pages_total: 1,
            pages_done: 0,
            channels: BTreeMap::from([(Channel::Email, email)]),
            totals: email,
            run_at_ms: None,
        }
    }

    #[test]
    fn a_plain_line_has_each_channel_the_total_rate_and_eta() {
        let s = status(RequestState::Running, counts(10, 4, 1, 4));
        let text = line(&s, &speed(2.0, 6, 4));
        assert_eq!(
            text,
            "[   2.0s] running  email 6/10 (delivered 4, failed 1, pending 4, suppressed 1)  total 6/10  3.0/s, eta 2s"
        );
        assert!(!text.contains('\u{1b}'), "no escape codes in plain output");
    }

    #[test]
    fn no_rate_or_eta_before_anything_moved() {
        assert_eq!(speed_text(&speed(1.0, 0, 10)), "-/s, eta -");
        assert_eq!(duration_text(61.2), "1m02s");
        assert_eq!(duration_text(7300.0), "2h01m");
    }

    #[test]
    fn paused_and_capped_show_while_running_only() {
        let mut s = status(RequestState::Running, counts(2, 0, 0, 2));
        s.paused = true;
        s.rate_per_second = Some(5);
        assert_eq!(state_text(&s), "running (paused) (capped at 5/s)");
        s.state = RequestState::Cancelled;
        assert_eq!(state_text(&s), "cancelled");
    }
}
