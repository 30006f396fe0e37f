//! Timers on the JavaScript event loop: `setTimeout` as a future.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::{Closure, wasm_bindgen};
use web_time::Instant;

#[wasm_bindgen]
extern "C" {
    // The global functions, so that timers work in windows and workers alike.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Closure<dyn FnMut()>, milliseconds: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
}

/// `setTimeout` delays above `i32::MAX` ms fire at once, so longer waits are chained.
const LONGEST_TIMEOUT_MS: u128 = i32::MAX as u128;

/// Completes at `deadline` (immediately if it has passed).
pub(crate) async fn sleep_until(deadline: Instant) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        Timeout::new(left).await;
    }
}

/// Completes after `duration`.
pub(crate) async fn sleep(duration: Duration) {
    sleep_until(Instant::now() + duration).await;
}

#[derive(Default)]
struct Fired {
    done: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// One `setTimeout`, cleared when dropped before it fires.
struct Timeout {
    fired: Rc<Fired>,
    handle: JsValue,
    _handler: Closure<dyn FnMut()>,
}

impl Timeout {
    fn new(duration: Duration) -> Self {
        let fired = Rc::new(Fired::default());
        let handler = {
            let fired = fired.clone();
            Closure::<dyn FnMut()>::new(move || {
                fired.done.set(true);
                if let Some(waker) = fired.waker.borrow_mut().take() {
                    waker.wake();
                }
            })
        };
        // Round up: a timer must never complete before its deadline.
        let milliseconds = duration.as_micros().div_ceil(1000).min(LONGEST_TIMEOUT_MS);
        let milliseconds = i32::try_from(milliseconds).unwrap_or(i32::MAX);
        let handle = set_timeout(&handler, milliseconds);
        Self {
            fired,
            handle,
            _handler: handler,
        }
    }
}

impl Future for Timeout {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.done.get() {
            Poll::Ready(())
        } else {
            *self.fired.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        if !self.fired.done.get() {
            clear_timeout(&self.handle);
        }
    }
}
