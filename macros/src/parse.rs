//! `impl Parse` for the `remote!` grammar and the attribute arguments.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Path, Token, Type, braced, bracketed};

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(stub);
}

/// `remote_impl!($crate; target, [a: A, b: B] -> T { body })`.
pub(crate) struct RemoteInput {
    /// The path of the runtime crate (`$crate` from the `remote!` wrapper).
    pub(crate) krate: TokenStream,
    /// A block name given by `#[distributed]`, after the module path: `name = "fn#0";`.
    pub(crate) name: Option<syn::LitStr>,
    /// `stub;` from `#[distributed]`, which reported a mistake in this block: expand to a
    /// value of the declared type only.
    pub(crate) stub: bool,
    pub(crate) target: Expr,
    pub(crate) captures: Punctuated<Capture, Token![,]>,
    pub(crate) bracket: syn::token::Bracket,
    pub(crate) output: Option<Type>,
    pub(crate) body: TokenStream,
    pub(crate) brace: syn::token::Brace,
}

/// One capture: `name: Type` (the type may be left out inside `#[distributed]`).
pub(crate) struct Capture {
    pub(crate) name: Ident,
    pub(crate) ty: Option<Type>,
}

impl Parse for Capture {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name = input.parse::<Ident>().map_err(|error| {
            syn::Error::new(
                error.span(),
                "`remote!` captures must be plain identifiers, as in `[x: u32, name: String]`",
            )
        })?;
        let ty = if input.peek(Token![:]) {
            input.parse::<Token![:]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Self { name, ty })
    }
}

impl Parse for RemoteInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut krate = TokenStream::new();
        while !input.peek(Token![;]) {
            if input.is_empty() {
                return Err(input.error(
                    "expected `$crate;` (call `remote!` through `distributed_scope::remote!`)",
                ));
            }
            krate.extend(std::iter::once(input.parse::<proc_macro2::TokenTree>()?));
        }
        input.parse::<Token![;]>()?;
        Self::parse_after_crate(input, krate)
    }
}

impl RemoteInput {
    /// Parses what follows `$crate;`: the user's own `remote!` tokens, possibly preceded by
    /// `name = "fn#0";` from `#[distributed]`.
    pub(crate) fn parse_after_crate(
        input: ParseStream<'_>,
        krate: TokenStream,
    ) -> syn::Result<Self> {
        let stub = input.peek(kw::stub) && input.peek2(Token![;]);
        if stub {
            input.parse::<kw::stub>()?;
            input.parse::<Token![;]>()?;
        }
        let name = if input.peek(kw::name) && input.peek2(Token![=]) {
            input.parse::<kw::name>()?;
            input.parse::<Token![=]>()?;
            let name = input.parse()?;
            input.parse::<Token![;]>()?;
            Some(name)
        } else {
            None
        };
        if input.is_empty() {
            return Err(input.error(
                "`remote!` needs a target peer, captures and a body: `remote!(peer, [x: u32] -> u32 { x + 1 })`",
            ));
        }
        if input.peek(syn::token::Bracket) {
            return Err(
                input.error("`remote!` is missing its target peer: `remote!(peer, [..] { .. })`")
            );
        }
        let target: Expr = input.parse()?;
        let lookahead = input.lookahead1();
        if !lookahead.peek(Token![,]) {
            return Err(lookahead.error());
        }
        input.parse::<Token![,]>()?;
        if !input.peek(syn::token::Bracket) {
            return Err(input.error(
                "`remote!` expects a capture list after the target: `[a: A, b: B]` (or `[]`)",
            ));
        }
        let content;
        let bracket = bracketed!(content in input);
        let mut captures = Punctuated::new();
        while !content.is_empty() {
            captures.push_value(content.parse()?);
            if content.is_empty() {
                break;
            }
            if !content.peek(Token![,]) {
                return Err(content.error(
                    "`remote!` captures are `name: Type` separated by commas, as in `[x: u32, name: String]`",
                ));
            }
            captures.push_punct(content.parse()?);
        }
        let output = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        if !input.peek(syn::token::Brace) {
            return Err(input.error("`remote!` is missing its body: `{ .. }` after the captures"));
        }
        let body_content;
        let brace = braced!(body_content in input);
        let body: TokenStream = body_content.parse()?;
        if !input.is_empty() {
            input.parse::<Option<Token![,]>>()?;
        }
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the body of `remote!`"));
        }
        Ok(Self {
            krate,
            stub,
            name,
            target,
            captures,
            bracket,
            output,
            body,
            brace,
        })
    }
}

/// The arguments of `#[remote_block]`: empty or `crate = path`.
#[derive(Default)]
pub(crate) struct BlockArgs {
    pub(crate) krate: Option<Path>,
}

impl Parse for BlockArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Ok(Self::default());
        }
        input.parse::<Token![crate]>()?;
        input.parse::<Token![=]>()?;
        let krate = input.parse()?;
        if !input.is_empty() {
            return Err(input.error("expected only `crate = path`"));
        }
        Ok(Self { krate: Some(krate) })
    }
}
