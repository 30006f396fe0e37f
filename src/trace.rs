//! Trace context across hops: [`Trace`] (W3C `traceparent` in `Call.metadata`), and how a
//! call's span records its outcome.

use std::fmt;

use web_time::Instant;

use crate::RemoteError;

/// The trace context of one call: the trace it belongs to and its own id.
///
/// It travels in `Call.metadata` as a W3C `traceparent` (`00-<trace id>-<call id>-01`): the
/// callee's span takes the caller's call id, and the calls it makes name that id as parent,
/// so one trace id links A -> B -> C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trace {
    pub(crate) trace_id: u128,
    pub(crate) call_id: u64,
}

impl Trace {
    /// The metadata key of the trace context.
    pub(crate) const KEY: &'static str = "traceparent";

    /// A new call: in the trace of `parent`, or in a new trace.
    pub(crate) fn child_of(parent: Option<Trace>) -> Self {
        Self {
            trace_id: parent.map_or_else(
                || u128::from(random_id()) << 64 | u128::from(random_id()),
                |parent| parent.trace_id,
            ),
            call_id: random_id(),
        }
    }

    pub(crate) fn to_traceparent(self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace_id, self.call_id)
    }

    /// Parses a `traceparent`; `None` for anything malformed (it is only a hint).
    pub(crate) fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.split('-');
        let (version, trace, call) = (parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || trace.len() != 32 || call.len() != 16 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let call_id = u64::from_str_radix(call, 16).ok()?;
        (trace_id != 0 && call_id != 0).then_some(Self { trace_id, call_id })
    }
}

/// Shows an id as fixed-width lowercase hex in span fields, formatted only if recorded.
#[derive(Clone, Copy)]
pub(crate) struct Hex<T>(pub(crate) T);

impl fmt::Display for Hex<u64> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for Hex<u128> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A non-zero id, distinct for every call of this process and unpredictable across
/// processes: a counter mixed (splitmix64) with a random per-process seed.
fn random_id() -> u64 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// The callee's side of a caller's `call` span, for a call of `block` from `caller` admitted
/// to run here until `deadline`: the span (none unless a subscriber records it) and the
/// call's trace context (the caller's, or a new one if this peer records the call).
pub(crate) fn serve_span(
    block: &crate::block::BlockInfo,
    caller: crate::PeerId,
    callee: crate::PeerId,
    deadline: Instant,
    trace: Option<Trace>,
) -> (tracing::Span, Option<Trace>) {
    use tracing::field::{Empty, display};
    if !calls_recorded() {
        return (tracing::Span::none(), trace);
    }
    let span = tracing::info_span!(
        target: "distributed_scope::call",
        "serve",
        block = block.name(),
        block_id = %Hex(block.id()),
        call_id = Empty,
        trace_id = Empty,
        caller = %caller,
        callee = %callee,
        deadline_ms = deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
        outcome = Empty,
        error_code = Empty,
        error = Empty,
        duration_ms = Empty,
    );
    let trace = trace.or_else(|| (!span.is_disabled()).then(|| Trace::child_of(None)));
    if let (Some(trace), false) = (trace, span.is_disabled()) {
        span.record("call_id", display(Hex(trace.call_id)));
        span.record("trace_id", display(Hex(trace.trace_id)));
    }
    (span, trace)
}

/// Whether a subscriber records call spans here. Without one, the `call` and `serve` spans
/// are not built at all: a dependency turns on `tracing`'s `log` feature, under which a
/// disabled span still evaluates its fields (a clock read among them) for the `log` crate.
pub(crate) fn calls_recorded() -> bool {
    tracing::enabled!(target: "distributed_scope::call", tracing::Level::INFO)
}

/// Records how a call ended on its span: `outcome` (`ok` or `error`), the error and its
/// kind code, and `duration_ms`. Does nothing for a disabled span.
pub(crate) fn record_outcome<T>(
    span: &tracing::Span,
    started: Option<Instant>,
    result: &Result<T, RemoteError>,
) {
    let Some(started) = started else {
        return;
    };
    span.record("duration_ms", started.elapsed().as_secs_f64() * 1000.0);
    match result {
        Ok(_) => {
            span.record("outcome", "ok");
        }
        Err(error) => {
            span.record("outcome", "error");
            span.record("error_code", error.code());
            span.record("error", tracing::field::display(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let trace = Trace::child_of(None);
        let child = Trace::child_of(Some(trace));
        assert_eq!(child.trace_id, trace.trace_id);
        assert_ne!(child.call_id, trace.call_id);
        assert_eq!(
            Trace::from_traceparent(&trace.to_traceparent()),
            Some(trace)
        );
        for bad in ["", "00-1-2-01", "00-zz", &"0".repeat(55)] {
            assert_eq!(Trace::from_traceparent(bad), None);
        }
    }
}
