//! Procedural macros of `distributed-scope`. Use them through the `distributed-scope` crate,
//! which documents them: `remote!`, `#[remote_block]`.

mod expand;
mod hash;
mod model;
mod parse;

use proc_macro::TokenStream;

/// The implementation of `distributed_scope::remote!`, which passes `$crate` first:
/// `remote_impl!($crate; target, [captures] -> T { body })`.
#[doc(hidden)]
#[proc_macro]
pub fn remote_impl(input: TokenStream) -> TokenStream {
    let location = call_location(&input);
    let input = syn::parse_macro_input!(input as parse::RemoteInput);
    expand::remote(input, location)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Declares a named block: `#[remote_block] async fn add(x: u32, y: u32) -> u32 { x + y }`
/// also generates `pub struct Add { pub x: u32, pub y: u32 }`, a message that runs `add` on a
/// peer. See the `distributed-scope` crate documentation.
#[proc_macro_attribute]
pub fn remote_block(args: TokenStream, item: TokenStream) -> TokenStream {
    let line = item
        .clone()
        .into_iter()
        .next()
        .map_or(0, |token| token.span().line());
    let args = syn::parse_macro_input!(args as parse::BlockArgs);
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    expand::remote_block(args, item, line)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The line and column of the user's `remote!` call: the first token after `$crate;`
/// (the `$crate` token itself carries the span of our own `macro_rules!`).
fn call_location(input: &TokenStream) -> (usize, usize) {
    let mut tokens = input.clone().into_iter();
    for token in tokens.by_ref() {
        if let proc_macro::TokenTree::Punct(punct) = &token {
            if punct.as_char() == ';' {
                break;
            }
        }
    }
    tokens
        .next()
        .map(|token| (token.span().line(), token.span().column()))
        .unwrap_or((0, 0))
}
