//! Procedural macros of `distributed-scope`. Use them through the `distributed-scope` crate,
//! which documents them: `remote!`, `remote_all!`, `#[distributed]`, `#[remote_block]`.

mod distributed;
mod expand;
mod hash;
mod model;
mod nesting;
mod parse;

use proc_macro::TokenStream;

/// The implementation of `distributed_scope::remote!`, which passes `$crate` first:
/// `remote_impl!($crate; target, [captures] -> T { body })`.
#[doc(hidden)]
#[proc_macro]
pub fn remote_impl(input: TokenStream) -> TokenStream {
    let location = call_location(&input);
    let input = syn::parse_macro_input!(input as parse::RemoteInput);
    expand::remote(input, location).into()
}

/// The implementation of `distributed_scope::remote_stream!`, which passes `$crate` first.
#[doc(hidden)]
#[proc_macro]
pub fn remote_stream_impl(input: TokenStream) -> TokenStream {
    let location = call_location(&input);
    let input = syn::parse_macro_input!(input as parse::RemoteInput);
    expand::remote_stream(input, location).into()
}

/// The implementation of `distributed_scope::remote_all!`, which passes `$crate` first:
/// `remote_all_impl!($crate; targets, [captures] -> T { body })`.
#[doc(hidden)]
#[proc_macro]
pub fn remote_all_impl(input: TokenStream) -> TokenStream {
    let location = call_location(&input);
    let input = syn::parse_macro_input!(input as parse::RemoteInput);
    expand::remote_all(input, location).into()
}

/// Declares a named block: an `async fn` that other peers run through a message.
///
/// ```no_run
/// use distributed_scope::{PeerId, RemoteError, remote_block};
///
/// #[remote_block]
/// async fn add(x: u32, y: u32) -> u32 {
///     x + y
/// }
///
/// async fn caller(server: PeerId) -> Result<u32, RemoteError> {
///     // Or send it to a peer's actor: `handle.addr().send(On::new(server, Add { x: 1, y: 2 }))`.
///     Add::new(1, 2).on(server).await
/// }
/// ```
///
/// # What it expands to
///
/// - the function itself, unchanged (it stays callable locally);
/// - `pub struct Add { pub x: u32, pub y: u32 }`, the message: one public field per
///   parameter, with a `Debug` impl. A function without parameters gets a unit struct
///   (`pub struct Stats;`, also `Clone`, `Copy` and `Default`), so `Stats.on(peer)` works;
/// - `impl Block for Add` (id, name, run: calls `add(x, y)`), with the bound that every
///   parameter type and the result type is `Serialize + DeserializeOwned + Send + 'static`,
///   checked at each type (`const _: () = check::<T>();`);
/// - natively, `impl actix::Message for Add` with `Result = Result<u32, RemoteError>` (a result
///   spelled `Result<T, RemoteError>` is flattened to `Result<T, RemoteError>`);
/// - an `inventory::submit!` of the block's registry entry;
/// - `impl Add { pub const fn new(x: u32, y: u32) -> Self; pub fn on(self, peer: PeerId) -> RemoteCall<u32> }`.
///
/// # Arguments
///
/// - `message = "Name"` names the message type; by default it is the CamelCase of the
///   function's name (`add` -> `Add`, `worker_stats` -> `WorkerStats`). A message named like
///   a type of the signature (`async fn job_config() -> JobConfig`) would clash with it, and
///   is an error asking for another name:
///
///   ```no_run
///   # use distributed_scope::{PeerId, RemoteError, remote_block};
///   #[derive(serde::Serialize, serde::Deserialize)]
///   pub struct JobConfig {
///       pub workers: u32,
///   }
///
///   #[remote_block(message = "FetchJobConfig")]
///   async fn job_config() -> JobConfig {
///       JobConfig { workers: 4 }
///   }
///
///   # async fn caller(server: PeerId) -> Result<JobConfig, RemoteError> {
///   let config: JobConfig = FetchJobConfig.on(server).await?;
///   # Ok(config) }
///   ```
/// - `crate = path` names the runtime crate when `proc-macro-crate` cannot find it (for
///   example when it is re-exported by another crate).
///
/// Both may be given, separated by a comma: `#[remote_block(message = "Sum", crate = ::scope)]`.
///
/// # Names and ids
///
/// The block's name is `module::path::add` (`module_path!()` and the function's name), stable
/// across builds, for policies and logs. Its id hashes the function's tokens (not their
/// spacing), its parameter and result types as spelled, and the module path. The message
/// type's name is part of neither: renaming it keeps the block callable by older peers.
///
/// The function must be `async`, not generic, without `self`, with plain identifier
/// parameters.
#[proc_macro_attribute]
pub fn remote_block(args: TokenStream, item: TokenStream) -> TokenStream {
    let line = item
        .clone()
        .into_iter()
        .next()
        .map_or(0, |token| token.span().line());
    let args = syn::parse_macro_input!(args as parse::BlockArgs);
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    expand::remote_block(args, &item, line)
        .unwrap_or_else(|error| {
            // The function itself still exists, so its callers see no second error.
            let error = error.into_compile_error();
            quote::quote!(#error #item)
        })
        .into()
}

/// Names the `remote!` blocks of a function and checks what they capture: the seed's
/// `defn-go-remote`.
///
/// ```no_run
/// use distributed_scope::{PeerId, RemoteError, distributed, remote};
///
/// #[distributed]
/// async fn demo(server: PeerId, client: PeerId) -> Result<(Vec<u32>, u32), RemoteError> {
///     // `client: PeerId` is a typed parameter: the capture needs no type.
///     remote!(server, [client] -> Result<(Vec<u32>, u32), RemoteError> {
///         let a: u32 = 42;
///         let copies = remote!(client, [a] -> Vec<u32> { vec![a; 43] }).await?;
///         Ok((copies, a + 2))
///     })
///     .await
/// }
/// ```
///
/// # What it expands to
///
/// The function, with each `remote!` in its body (nested ones included) rewritten before it
/// expands:
/// - named `module::path::demo#0`, `#1`, ... in source order, outer blocks before the
///   blocks they contain (here `demo#0` is the server block, `demo#1` the client block);
/// - each capture written without a type gets the type the function shows: a typed
///   parameter (`client: PeerId`), `let x: T = ..`, or `let x = remote!(.. -> T ..).await?`
///   (`T`, or `U` if `T` is `Result<U, RemoteError>`; without `?`, `Result<T, RemoteError>`).
///   Inside a block, its captures and its own `let x: T` show types to nested blocks.
///   Otherwise the capture is an error asking for `name: Type`;
/// - a local of the code around a block (a parameter or an earlier `let`) that the block's
///   body uses without capturing it is an error naming it and the fix, also when it shadows a
///   module item of the same name, which a plain `remote!` body would silently resolve to;
/// - a capture or result type that names a type parameter of the function is an error.
///
/// Each `remote!` then expands as documented there. Ids do not depend on the names: a block
/// keeps its id when it moves into or out of a `#[distributed]` function. But a named block
/// is found only under its name, so a peer whose build names it differently (anonymous in
/// one build, `module::fn#i` in the other, or another index `i`) does not run it.
///
/// `#[distributed(crate = path)]` names the runtime crate when `proc-macro-crate` cannot
/// find it.
#[proc_macro_attribute]
pub fn distributed(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(args as parse::BlockArgs);
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    distributed::distributed(args, item.clone())
        .unwrap_or_else(|error| {
            let error = error.into_compile_error();
            quote::quote!(#error #item)
        })
        .into()
}

/// The line and column of the user's `remote!` call: the first token after `$crate;`
/// (the `$crate` token itself carries the span of our own `macro_rules!`).
fn call_location(input: &TokenStream) -> (usize, usize) {
    let mut tokens = input.clone().into_iter();
    for token in tokens.by_ref() {
        if let proc_macro::TokenTree::Punct(punct) = &token
            && punct.as_char() == ';'
        {
            break;
        }
    }
    tokens
        .next()
        .map(|token| (token.span().line(), token.span().column()))
        .unwrap_or((0, 0))
}
