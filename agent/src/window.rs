//! How much the uplink keeps in flight: enough to fill the link, and so little more that a STAT
//! study recorded now waits behind about one round trip of other data, not behind a backlog.
//!
//! Everything published and not yet acked by the hub is "in flight": in rumqttc, in the sockets,
//! in the queue at the slow end of the link, at the hub. None of it can be reordered any more,
//! so a STAT study published now arrives after all of it. On a 1 Mbit/s link, 32 routine
//! studies of 43 kB in flight are 11 s of link time ahead of the STAT study.
//!
//! So the routine lanes (monitoring, routine studies, images) may only fill a byte budget sized
//! to the link: twice its bandwidth-delay product, measured as BBR measures it (the highest
//! delivery rate acks showed in the last 10 s, times the lowest round trip of the last 30 s),
//! or what the link delivers in [`QUEUE_TIME`] if that is more, and never under [`MIN_BUDGET`];
//! two routine messages may always be out ([`PIPELINE`]), however large.
//! The priority lanes (STAT, urgent) have a budget of the same size of their own, so they go out
//! at once whatever the routine lanes hold.
//!
//! The [`QUEUE_TIME`] share is for fast links: there the hub, not the link, sets the pace, and it
//! commits a batch of what has come in at a time, so more in flight means larger batches and a
//! faster catch-up after an outage. A STAT study waits that long at most behind them.
//!
//! A standing queue would make every round trip look longer, and a budget sized on it would
//! grow the queue further. So when no round trip has been measured on an empty window for
//! [`PROBE_AFTER`], the routine lanes wait until nothing is in flight and send one message: its
//! round trip is the link's own.
//!
//! Time is an argument; the uplink reads the clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use yilian_protocol::message::Lane;

/// Image chunks in flight at most (about 200 KB: under half a second of a 4 Mbit/s uplink
/// ahead of an ECG).
pub const BULK_WINDOW: usize = 2;
/// The byte budget is never smaller than this (about half a second of a 1 Mbit/s link), so
/// that two routine studies can be on their way and the link is not idle between them.
pub const MIN_BUDGET: u64 = 64 * 1024;
/// Nor larger than this.
pub const MAX_BUDGET: u64 = 16 * 1024 * 1024;
/// The budget is this many bandwidth-delay products: one on the wire, one waiting to follow.
pub const GAIN: f64 = 2.0;
/// The budget is at least what the link delivers in this long.
pub const QUEUE_TIME: Duration = Duration::from_millis(250);
/// Delivery-rate samples are kept this long (the budget uses the highest).
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Round-trip samples are kept this long (the budget uses the lowest).
pub const RTT_WINDOW: Duration = Duration::from_secs(30);
/// With no round trip measured on an empty window for this long, measure one.
pub const PROBE_AFTER: Duration = Duration::from_secs(10);
/// Routine messages that may always be in flight, whatever their size: one on the wire and the
/// next behind it, so that a link carrying large messages (96 kB image chunks and study parts)
/// is not idle while the hub acks the one before. A budget sized on small messages alone let
/// only one image chunk out at a time and left a 4 Mbit/s link a third idle.
pub const PIPELINE: usize = 2;
/// Messages sent more than once are remembered, at most, so their acks give no samples.
const RESENT_MAX: usize = 4096;

/// True for the lanes that go ahead of everything else (STAT and urgent studies).
pub fn is_priority(lane: Lane) -> bool {
    matches!(lane, Lane::Stat | Lane::Urgent)
}

#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    bytes: u64,
    lane: Lane,
    /// Nothing else was in flight when it went: its round trip is the link's own.
    alone: bool,
    /// What had been delivered when it went, and when that last grew (BBR's rate sample).
    delivered: u64,
    delivered_at: Instant,
    /// When the first message of the flight it belongs to went.
    flight_start: Instant,
}

/// The uplink's messages in flight and what the link has shown it can carry.
#[derive(Debug)]
pub struct LinkWindow {
    max_messages: usize,
    inflight: HashMap<u64, Sent>,
    /// Sent again (after an ack timeout or a reconnect): an ack may be for either copy.
    resent: HashSet<u64>,
    delivered: u64,
    delivered_at: Instant,
    flight_start: Instant,
    /// (when, bytes/s), kept [`RATE_WINDOW`].
    rates: VecDeque<(Instant, f64)>,
    /// (when, round trip), kept [`RTT_WINDOW`].
    rtts: VecDeque<(Instant, Duration)>,
    srtt: Option<Duration>,
    last_alone_sample: Option<Instant>,
}

/// What may be published now, counted down as messages are chosen (see
/// [`LinkWindow::admission`]).
#[derive(Debug, Clone)]
pub struct Admission {
    budget: u64,
    probing: bool,
    max_messages: usize,
    max_routine_messages: usize,
    messages: usize,
    routine_messages: usize,
    bulk: usize,
    priority_bytes: u64,
    all_bytes: u64,
}

impl Admission {
    /// True once the routine lanes can take nothing more.
    pub fn routine_closed(&self) -> bool {
        self.routine_messages >= self.max_routine_messages
            || (self.all_bytes >= self.budget && self.routine_messages >= PIPELINE)
            || (self.probing && self.messages > 0)
    }

    /// Whether a message of `bytes` in `lane` may go now; if so it is counted.
    ///
    /// Priority lanes may fill their own budget whatever else is in flight. The other lanes
    /// share what is left of one budget with them (but may always have [`PIPELINE`] messages
    /// out), and image chunks are at most [`BULK_WINDOW`]. A lane with room may overshoot its
    /// budget by one message, so a message larger than the budget still goes.
    pub fn admit(&mut self, lane: Lane, bytes: u64) -> bool {
        if self.messages >= self.max_messages {
            return false;
        }
        if is_priority(lane) {
            if self.priority_bytes >= self.budget {
                return false;
            }
            self.priority_bytes += bytes;
        } else {
            if self.routine_closed() || (lane.is_bulk() && self.bulk >= BULK_WINDOW) {
                return false;
            }
            self.routine_messages += 1;
            self.bulk += usize::from(lane.is_bulk());
        }
        self.messages += 1;
        self.all_bytes += bytes;
        true
    }

    /// True once nothing more can go in any lane.
    pub fn closed(&self) -> bool {
        self.messages >= self.max_messages || (self.priority_bytes >= self.budget && self.routine_closed())
    }
}

impl LinkWindow {
    /// A window of at most `max_messages` in flight (rumqttc's in-flight limit), at `now`.
    pub fn new(max_messages: usize, now: Instant) -> Self {
        Self {
            max_messages: max_messages.max(1),
            inflight: HashMap::new(),
            resent: HashSet::new(),
            delivered: 0,
            delivered_at: now,
            flight_start: now,
            rates: VecDeque::new(),
            rtts: VecDeque::new(),
            srtt: None,
            last_alone_sample: None,
        }
    }

    /// The highest delivery rate of the last [`RATE_WINDOW`], bytes/s.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        self.rates.iter().filter(|(at, _)| now.duration_since(*at) <= RATE_WINDOW).map(|(_, r)| *r).reduce(f64::max)
    }

    /// The lowest round trip (publish to the hub's ack) of the last [`RTT_WINDOW`].
    pub fn min_rtt(&self, now: Instant) -> Option<Duration> {
        self.rtts.iter().filter(|(at, _)| now.duration_since(*at) <= RTT_WINDOW).map(|(_, r)| *r).min()
    }

    /// The byte budget of each class of lanes now.
    pub fn budget(&self, now: Instant) -> u64 {
        match (self.rate(now), self.min_rtt(now)) {
            (Some(rate), Some(rtt)) => {
                let bdp = GAIN * rate * rtt.as_secs_f64();
                (bdp.max(rate * QUEUE_TIME.as_secs_f64()) as u64).clamp(MIN_BUDGET, MAX_BUDGET)
            }
            _ => MIN_BUDGET,
        }
    }

    /// True while the routine lanes hold back to measure the link's own round trip.
    pub fn probing(&self, now: Instant) -> bool {
        // Only once the link has answered at all: the first messages measure it anyway.
        !self.rtts.is_empty() && self.last_alone_sample.is_none_or(|t| now.duration_since(t) > PROBE_AFTER)
    }

    /// What may go now.
    pub fn admission(&self, now: Instant) -> Admission {
        let priority_bytes = self.inflight.values().filter(|s| is_priority(s.lane)).map(|s| s.bytes).sum();
        let routine_messages = self.inflight.values().filter(|s| !is_priority(s.lane)).count();
        Admission {
            budget: self.budget(now),
            probing: self.probing(now),
            max_messages: self.max_messages,
            // A quarter of the messages stay free for the priority lanes.
            max_routine_messages: (self.max_messages - self.max_messages / 4).max(1),
            messages: self.inflight.len(),
            routine_messages,
            bulk: self.inflight.values().filter(|s| s.lane.is_bulk()).count(),
            priority_bytes,
            all_bytes: self.bytes(),
        }
    }

    /// `seq` (`bytes` long, in `lane`) was handed to the MQTT client at `now`.
    pub fn sent(&mut self, seq: u64, lane: Lane, bytes: u64, now: Instant) {
        let alone = self.inflight.is_empty();
        if alone {
            self.flight_start = now;
            self.delivered_at = now;
        }
        let sent = Sent {
            at: now,
            bytes,
            lane,
            alone,
            delivered: self.delivered,
            delivered_at: self.delivered_at,
            flight_start: self.flight_start,
        };
        if self.inflight.insert(seq, sent).is_some() {
            self.note_resent(seq);
        }
    }

    fn note_resent(&mut self, seq: u64) {
        if self.resent.len() >= RESENT_MAX {
            self.resent.clear();
        }
        self.resent.insert(seq);
    }

    /// The hub acked `seqs` at `now`: they leave the window, and the freshest of them that was
    /// sent only once is a sample of the link's rate and round trip.
    pub fn acked(&mut self, seqs: impl IntoIterator<Item = u64>, now: Instant) {
        let mut newest: Option<Sent> = None;
        for seq in seqs {
            let Some(s) = self.inflight.remove(&seq) else { continue };
            self.delivered += s.bytes;
            self.delivered_at = now;
            if self.resent.remove(&seq) {
                continue; // Karn: the ack may be for the first copy
            }
            if newest.as_ref().is_none_or(|n| s.at > n.at) {
                newest = Some(s);
            }
        }
        let Some(p) = newest else { return };
        let rtt = now.duration_since(p.at);
        self.rtts.retain(|(at, _)| now.duration_since(*at) <= RTT_WINDOW);
        self.rtts.push_back((now, rtt));
        self.srtt = Some(self.srtt.map_or(rtt, |s| (s * 7 + rtt) / 8));
        if p.alone {
            self.last_alone_sample = Some(now);
        }
        self.flight_start = p.at;
        // Over the longer of the send and ack spans, so acks bunched up by the hub's batches
        // cannot fake a rate the link never had.
        let interval = p.at.duration_since(p.flight_start).max(now.duration_since(p.delivered_at));
        if interval.is_zero() || self.min_rtt(now).is_some_and(|m| interval < m) {
            return;
        }
        let rate = (self.delivered - p.delivered) as f64 / interval.as_secs_f64();
        self.rates.retain(|(at, _)| now.duration_since(*at) <= RATE_WINDOW);
        self.rates.push_back((now, rate));
    }

    /// `seq` left the window without an ack (the hub refused it): no sample.
    pub fn forget(&mut self, seq: u64) {
        self.inflight.remove(&seq);
        self.resent.remove(&seq);
    }

    /// Drops from the window what has waited longer than `ack_timeout` (or four smoothed round
    /// trips, if longer: on a very slow link an ack may take longer than the configured
    /// timeout), so it is sent again. Returns how many.
    pub fn expire(&mut self, now: Instant, ack_timeout: Duration) -> usize {
        let timeout = self.srtt.map_or(ack_timeout, |s| ack_timeout.max(s * 4));
        let old: Vec<u64> =
            self.inflight.iter().filter(|(_, s)| now.duration_since(s.at) >= timeout).map(|(seq, _)| *seq).collect();
        for seq in &old {
            self.inflight.remove(seq);
            self.note_resent(*seq);
        }
        old.len()
    }

    /// The connection was made again: everything in flight will be sent again.
    pub fn reconnected(&mut self) {
        let seqs: Vec<u64> = self.inflight.keys().copied().collect();
        for seq in seqs {
            self.note_resent(seq);
        }
        self.inflight.clear();
    }

    /// The seqs in flight.
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.inflight.keys().copied()
    }

    /// True if nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// Bytes in flight.
    pub fn bytes(&self) -> u64 {
        self.inflight.values().map(|s| s.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A link of `rate` bytes/s and `rtt` round trip with a FIFO bottleneck: when each message
    /// sent at `at` is acked.
    struct Link {
        rate: f64,
        rtt: Duration,
        busy_until: Instant,
    }

    impl Link {
        fn ack_at(&mut self, at: Instant, bytes: u64) -> Instant {
            let start = self.busy_until.max(at);
            self.busy_until = start + Duration::from_secs_f64(bytes as f64 / self.rate);
            self.busy_until + self.rtt
        }
    }

    /// Drives a window over `link` with a backlog of `size`-byte routine messages for
    /// `duration`; returns the window, the bytes delivered, and the most bytes that were ever
    /// in flight ahead of a message published at an arbitrary moment.
    fn run_backlog(link: &mut Link, size: u64, duration: Duration) -> (LinkWindow, u64, u64) {
        let t0 = Instant::now();
        let mut w = LinkWindow::new(32, t0);
        let mut now = t0;
        let mut acks: Vec<(Instant, u64)> = Vec::new();
        let (mut seq, mut delivered, mut worst) = (0u64, 0u64, 0u64);
        while now < t0 + duration {
            let mut a = w.admission(now);
            while a.admit(Lane::Routine, size) {
                seq += 1;
                w.sent(seq, Lane::Routine, size, now);
                acks.push((link.ack_at(now, size), seq));
            }
            worst = worst.max(w.bytes());
            // Jump to the next ack.
            acks.sort();
            let Some(&(at, _)) = acks.first() else { break };
            now = at;
            let due: Vec<u64> = acks.iter().filter(|(t, _)| *t <= now).map(|(_, s)| *s).collect();
            acks.retain(|(t, _)| *t > now);
            delivered += due.len() as u64 * size;
            w.acked(due, now);
        }
        (w, delivered, worst)
    }

    #[test]
    fn a_routine_backlog_on_a_slow_link_keeps_little_in_flight_and_still_fills_the_link() {
        // 1 Mbit/s, 300 ms, routine studies of 43 kB.
        let mut link = Link { rate: 125_000.0, rtt: ms(300), busy_until: Instant::now() };
        let (w, delivered, worst) = run_backlog(&mut link, 43_000, Duration::from_secs(60));
        let rate = delivered as f64 / 60.0;
        assert!(rate > 0.85 * 125_000.0, "the link carried {rate:.0} B/s of 125,000");
        // Today's count window alone would hold 32 × 43 kB = 1.4 MB: 11 s of this link.
        assert!(worst <= 250_000, "{worst} bytes in flight at most, 2 s of the link");
        let now = Instant::now() + Duration::from_secs(60);
        assert!(w.min_rtt(now).is_some_and(|r| r >= ms(300)));
    }

    #[test]
    fn on_a_fast_link_the_budget_grows_past_the_bandwidth_delay_product() {
        // 100 Mbit/s, 20 ms: 250 kB in flight fill it, and a quarter of a second of it is 3 MB.
        let mut link = Link { rate: 12_500_000.0, rtt: ms(20), busy_until: Instant::now() };
        let (w, delivered, worst) = run_backlog(&mut link, 43_000, Duration::from_secs(10));
        let rate = delivered as f64 / 10.0;
        assert!(rate > 0.8 * 12_500_000.0, "the link carried {rate:.0} B/s of 12,500,000");
        assert!(worst >= 24 * 43_000, "only {worst} bytes in flight: the count window's routine share is 24 messages");
        assert!(w.budget(Instant::now() + Duration::from_secs(10)) > MIN_BUDGET);
    }

    #[test]
    fn stat_goes_at_once_while_the_routine_lanes_are_full() {
        let t0 = Instant::now();
        let mut w = LinkWindow::new(32, t0);
        let mut a = w.admission(t0);
        let mut seq = 0;
        while a.admit(Lane::Routine, 43_000) {
            seq += 1;
            w.sent(seq, Lane::Routine, 43_000, t0);
        }
        assert_eq!(seq, 2, "the initial budget holds two routine studies");
        let mut a = w.admission(t0);
        assert!(!a.admit(Lane::Stream, 5_500), "the routine lanes are full");
        assert!(a.admit(Lane::Stat, 43_000), "STAT has its own budget");
        assert!(a.admit(Lane::Urgent, 43_000), "and may overshoot it by one message");
        assert!(!a.admit(Lane::Stat, 43_000));
        assert!(a.closed());
    }

    #[test]
    fn messages_larger_than_the_budget_still_go_two_at_a_time_and_images_keep_their_small_share() {
        let t0 = Instant::now();
        let w = LinkWindow::new(32, t0);
        let mut a = w.admission(t0);
        assert!(a.admit(Lane::Routine, 120_000));
        assert!(a.admit(Lane::Routine, 120_000), "two may always be out, so the link is never idle");
        assert!(!a.admit(Lane::Routine, 10));
        let mut a = w.admission(t0);
        assert!(a.admit(Lane::Bulk, 10));
        assert!(a.admit(Lane::BulkUrgent, 10));
        assert!(!a.admit(Lane::Bulk, 10), "two image chunks at most");
        assert!(a.admit(Lane::Stream, 10));
    }

    #[test]
    fn the_count_window_keeps_a_quarter_free_for_the_priority_lanes() {
        let t0 = Instant::now();
        let w = LinkWindow::new(8, t0);
        let mut a = w.admission(t0);
        let routine = (0..8).take_while(|_| a.admit(Lane::Stream, 10)).count();
        assert_eq!(routine, 6);
        assert!(a.admit(Lane::Stat, 10) && a.admit(Lane::Stat, 10));
        assert!(!a.admit(Lane::Stat, 10), "8 messages in flight at most");
        assert!(LinkWindow::new(1, t0).admission(t0).admit(Lane::Routine, 10), "a window of one still sends");
    }

    #[test]
    fn acks_for_resent_messages_give_no_samples() {
        let t0 = Instant::now();
        let mut w = LinkWindow::new(32, t0);
        w.sent(1, Lane::Stream, 1000, t0);
        assert_eq!(w.expire(t0 + ms(20_000), ms(20_000)), 1);
        w.sent(1, Lane::Stream, 1000, t0 + ms(20_000));
        // The ack of the first copy comes just after the second went: not a 1 ms round trip.
        w.acked([1], t0 + ms(20_001));
        assert_eq!(w.min_rtt(t0 + ms(20_001)), None);
        assert!(w.is_empty());
        w.sent(2, Lane::Stream, 1000, t0 + ms(21_000));
        w.reconnected();
        w.sent(2, Lane::Stream, 1000, t0 + ms(22_000));
        w.acked([2], t0 + ms(22_001));
        assert_eq!(w.min_rtt(t0 + ms(22_001)), None);
        w.sent(3, Lane::Stream, 1000, t0 + ms(23_000));
        w.acked([3], t0 + ms(23_300));
        assert_eq!(w.min_rtt(t0 + ms(23_300)), Some(ms(300)));
    }

    #[test]
    fn the_ack_timeout_stretches_to_four_round_trips_on_a_very_slow_link() {
        let t0 = Instant::now();
        let mut w = LinkWindow::new(32, t0);
        w.sent(1, Lane::Stream, 1000, t0);
        w.acked([1], t0 + ms(8000));
        w.sent(2, Lane::Stream, 1000, t0 + ms(8000));
        assert_eq!(w.expire(t0 + ms(30_000), ms(20_000)), 0, "4 × 8 s round trips is 32 s");
        assert_eq!(w.expire(t0 + ms(40_000), ms(20_000)), 1);
    }

    #[test]
    fn without_a_round_trip_on_an_empty_window_for_a_while_the_routine_lanes_measure_one() {
        let t0 = Instant::now();
        let mut w = LinkWindow::new(32, t0);
        assert!(!w.probing(t0), "nothing measured yet");
        w.sent(1, Lane::Stream, 1000, t0);
        w.sent(2, Lane::Stream, 1000, t0);
        w.acked([2], t0 + ms(300));
        assert!(w.probing(t0 + ms(300)), "the message acked was not sent alone");
        w.acked([1], t0 + ms(301));
        assert!(!w.probing(t0 + ms(301)), "this one was");
        // Then a standing queue: something is always in flight when the next message goes.
        let mut t = t0 + ms(400);
        w.sent(3, Lane::Stream, 1000, t);
        for seq in 4..100u64 {
            t += ms(200);
            w.sent(seq, Lane::Stream, 1000, t);
            w.acked([seq - 1], t + ms(1));
        }
        assert!(w.probing(t + ms(1)), "no clean round trip for {:?}", t.duration_since(t0));
        let mut a = w.admission(t + ms(1));
        assert!(!a.admit(Lane::Stream, 1000), "the routine lanes wait for the window to empty");
        assert!(a.admit(Lane::Stat, 1000), "STAT does not");
        w.acked([99], t + ms(2));
        let mut a = w.admission(t + ms(2));
        assert!(a.admit(Lane::Stream, 1000) && !a.admit(Lane::Stream, 1000), "then one goes alone");
        w.sent(7, Lane::Stream, 1000, t + ms(2));
        w.acked([7], t + ms(300));
        assert!(!w.probing(t + ms(300)));
    }
}
