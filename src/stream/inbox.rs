//! The caller's side of a stream's flow control: the window it grants, and the inbox where
//! its link puts the items for the consumer (see the stream module for the protocol).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Waker};

use bytes::Bytes;

/// How many items, and how many bytes of them, a stream's callee may send ahead of what the
/// caller's consumer took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) items: u32,
    pub(crate) bytes: u32,
}

impl Window {
    /// The default window: 4 096 items, 1 MiB (many frames of small items in flight; the
    /// bytes bound the memory).
    pub(crate) const DEFAULT: Self = Self {
        items: 4096,
        bytes: 1 << 20,
    };

    /// The most a caller may ask for: a callee never holds more for one stream than this
    /// says it may send at once.
    pub(crate) const MAX: Self = Self {
        items: 1 << 16,
        bytes: 64 << 20,
    };

    /// `items:bytes`, as the `ds-stream` metadata carries it; `None` unless both are in
    /// `1..=MAX`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (items, bytes) = text.split_once(':')?;
        let window = Self {
            items: items.parse().ok()?,
            bytes: bytes.parse().ok()?,
        };
        let valid = (1..=Self::MAX.items).contains(&window.items)
            && (1..=Self::MAX.bytes).contains(&window.bytes);
        valid.then_some(window)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.items, self.bytes)
    }
}

/// Asks the link a stream call went out on to send the callee more credit.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type Ask = Box<dyn Fn() + Send + Sync>;
/// Asks the link a stream call went out on to send the callee more credit.
#[cfg(target_arch = "wasm32")]
pub(crate) type Ask = Box<dyn Fn()>;

/// Where the link puts the items of one of this side's stream calls, and its consumer takes
/// them: at most a window of them (the link closes on a callee that sends more).
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
    window: Window,
    ask: OnceLock<Ask>,
}

#[derive(Default)]
struct InboxState {
    /// Frames of items, and how many items each holds.
    items: VecDeque<(Bytes, u64)>,
    waker: Option<Waker>,
    /// Items and bytes the consumer took, in all ...
    taken_items: u64,
    taken_bytes: u64,
    /// ... and as of its last request for credit.
    asked_items: u64,
    asked_bytes: u64,
}

impl Inbox {
    pub(crate) fn new(window: Window) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(InboxState::default()),
            window,
            ask: OnceLock::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, InboxState> {
        // Every update is a push, a pop or a count: a panic elsewhere cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn window(&self) -> Window {
        self.window
    }

    /// How the consumer asks for credit, set by the runtime when the call goes out.
    pub(crate) fn on_ask(&self, ask: Ask) {
        let _set_once = self.ask.set(ask);
    }

    /// `count` items arrived, encoded one after the other in `items` (the link checked they
    /// were within the credit).
    pub(crate) fn push(&self, items: Bytes, count: u64) {
        let waker = {
            let mut state = self.lock();
            state.items.push_back((items, count));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Items and bytes the consumer took, in all.
    pub(crate) fn taken(&self) -> (u64, u64) {
        let state = self.lock();
        (state.taken_items, state.taken_bytes)
    }

    /// The next frame of items and their count; `None` (and the consumer woken when one
    /// comes) if there is none yet. The consumer reports the items it takes from it with
    /// [`Inbox::took`].
    pub(crate) fn pop(&self, cx: &mut Context<'_>) -> Option<(Bytes, u64)> {
        let mut state = self.lock();
        let items = state.items.pop_front();
        if items.is_none() {
            state.waker = Some(cx.waker().clone());
        }
        items
    }

    /// The consumer took `items` items of `bytes` bytes: past half a window since its last
    /// request, it asks for more credit.
    pub(crate) fn took(&self, items: u64, bytes: u64) {
        let ask = {
            let mut state = self.lock();
            state.taken_items += items;
            state.taken_bytes += bytes;
            let ask = state.taken_items - state.asked_items
                >= u64::from(self.window.items.div_ceil(2))
                || state.taken_bytes - state.asked_bytes
                    >= u64::from(self.window.bytes.div_ceil(2));
            if ask {
                state.asked_items = state.taken_items;
                state.asked_bytes = state.taken_bytes;
            }
            ask
        };
        if ask && let Some(ask) = self.ask.get() {
            ask();
        }
    }

    /// Items waiting for the consumer.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_only_within_their_bounds() {
        assert_eq!(
            Window::parse("256:1048576"),
            Some(Window {
                items: 256,
                bytes: 1 << 20
            })
        );
        assert_eq!(
            Window::parse(&Window::DEFAULT.to_string()),
            Some(Window::DEFAULT)
        );
        for bad in [
            "",
            "1",
            "0:1",
            "1:0",
            "65537:1",
            "1:67108865",
            "a:b",
            "1:2:3",
            "-1:5",
        ] {
            assert_eq!(Window::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_inbox_asks_for_credit_once_per_half_window_taken() {
        let inbox = Inbox::new(Window {
            items: 4,
            bytes: 1000,
        });
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        inbox.on_ask(Box::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(inbox.pop(&mut cx).is_none());
        inbox.push(Bytes::from_static(b"abababab"), 4);
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox.pop(&mut cx).map(|(_, count)| count), Some(4));
        let asked_now = || asked.load(std::sync::atomic::Ordering::SeqCst);
        inbox.took(1, 2);
        assert_eq!(asked_now(), 0);
        inbox.took(1, 2);
        assert_eq!(asked_now(), 1, "half of 4 items");
        assert_eq!(inbox.taken(), (2, 4));
        inbox.took(2, 4);
        assert_eq!(asked_now(), 2);
        // Bytes count too: one large item is half the byte window.
        inbox.took(1, 500);
        assert_eq!(asked_now(), 3);
        assert!(inbox.pop(&mut cx).is_none());
    }
}
