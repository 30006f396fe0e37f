//! `impl Parse` for the `remote!` grammar and the attribute arguments.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Path, Token, Type, braced, bracketed};

mod kw {
    syn::custom_keyword!(message);
    syn::custom_keyword!(name);
    syn::custom_keyword!(root);
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
    /// `root = 0x..u64;` from the block this one is lexically nested in: the token hash of
    /// the entry point (the outermost block) it belongs to.
    pub(crate) root: Option<syn::LitInt>,
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
    /// Parses what follows `$crate;`: the user's own `remote!` tokens, possibly preceded (in
    /// any order) by `stub;` and `name = "fn#0";` from `#[distributed]` and `root = N;` from
    /// an enclosing block.
    pub(crate) fn parse_after_crate(
        input: ParseStream<'_>,
        krate: TokenStream,
    ) -> syn::Result<Self> {
        let (mut stub, mut name, mut root) = (false, None, None);
        loop {
            if input.peek(kw::stub) && input.peek2(Token![;]) {
                input.parse::<kw::stub>()?;
                input.parse::<Token![;]>()?;
                stub = true;
            } else if input.peek(kw::name) && input.peek2(Token![=]) {
                input.parse::<kw::name>()?;
                input.parse::<Token![=]>()?;
                name = Some(input.parse()?);
                input.parse::<Token![;]>()?;
            } else if input.peek(kw::root) && input.peek2(Token![=]) {
                input.parse::<kw::root>()?;
                input.parse::<Token![=]>()?;
                root = Some(input.parse()?);
                input.parse::<Token![;]>()?;
            } else {
                break;
            }
        }
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
            root,
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

/// The arguments of `#[remote_block]` and `#[distributed]`: `crate = path` and (for
/// `#[remote_block]`) `message = "TypeName"`, in any order, separated by commas.
#[derive(Default)]
pub(crate) struct BlockArgs {
    pub(crate) krate: Option<Path>,
    /// The message type's name, checked to be an identifier and spanned at the string.
    pub(crate) message: Option<Ident>,
}

impl Parse for BlockArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Self::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(Token![crate]) {
                let key = input.parse::<Token![crate]>()?;
                input.parse::<Token![=]>()?;
                let path = input.parse()?;
                if args.krate.replace(path).is_some() {
                    return Err(syn::Error::new_spanned(key, "`crate` is given twice"));
                }
            } else if lookahead.peek(kw::message) {
                let key = input.parse::<kw::message>()?;
                input.parse::<Token![=]>()?;
                let message = message_name(input)?;
                if args.message.replace(message).is_some() {
                    return Err(syn::Error::new_spanned(key, "`message` is given twice"));
                }
            } else {
                return Err(lookahead.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// `"FetchConfig"` after `message =`: a string holding a type name.
fn message_name(input: ParseStream<'_>) -> syn::Result<Ident> {
    let literal = match input.parse::<syn::Lit>() {
        Ok(syn::Lit::Str(literal)) => literal,
        Ok(other) => return Err(not_a_message_name(&other)),
        Err(_) => return Err(input.error(
                "`#[remote_block(message = ..)]` expects a type name in quotes, as in `message = \"FetchConfig\"`",
            )),
    };
    let value = literal.value();
    match syn::parse_str::<Ident>(&value) {
        Ok(mut ident) => {
            ident.set_span(literal.span());
            Ok(ident)
        }
        Err(_) => Err(not_a_message_name(&literal)),
    }
}

fn not_a_message_name(tokens: &impl quote::ToTokens) -> syn::Error {
    syn::Error::new_spanned(
        tokens,
        "`#[remote_block(message = ..)]` must name the message type with one identifier, as in `message = \"FetchConfig\"`",
    )
}
