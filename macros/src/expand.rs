//! Code generation: one function per generated item.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::hash::{Fnv, render};
use crate::model::{self, Capture, Output};
use crate::parse::{BlockArgs, RemoteInput};

/// Everything the generated items of one block need.
struct Block {
    krate: TokenStream,
    /// The message type.
    ident: Ident,
    captures: Vec<Capture>,
    output: Output,
    /// An expression of type `&'static str`.
    name: TokenStream,
    hash: u64,
    /// The token hash of the entry point this block is lexically nested in, if any.
    root: Option<u64>,
    line: usize,
    /// A `remote_stream!` block: `output` is the item type.
    stream: bool,
}

impl Block {
    fn hash(captures: &[Capture], output: &Output, body: TokenStream, stream: bool) -> u64 {
        let mut fnv = Fnv::new();
        if stream {
            fnv.section("stream", TokenStream::new());
        }
        for capture in captures {
            let (name, ty) = (&capture.name, &capture.ty);
            fnv.section("capture", quote!(#name : #ty));
        }
        let ty = &output.body;
        fnv.section("output", quote!(#ty));
        fnv.section("body", body);
        fnv.finish()
    }

    fn capture_types(&self) -> Vec<&Type> {
        self.captures.iter().map(|capture| &capture.ty).collect()
    }

    /// The capture types and the result type: each must be `Capture`.
    fn checked_types(&self) -> Vec<&Type> {
        let mut types = self.capture_types();
        types.push(self.output.value());
        types
    }

    /// One `check::<T>()` per capture and result type, spanned at the type, so that a type
    /// that cannot travel gets its error there. The `Block` impl assumes the same bounds
    /// (`for<'__wire>` makes them legal where they are trivially false), so it adds none.
    fn checks(&self) -> TokenStream {
        let krate = &self.krate;
        self.checked_types()
            .into_iter()
            .map(|ty| {
                quote_spanned! {ty.span()=>
                    const _: () = #krate::__private::check::<#ty>();
                }
            })
            .collect()
    }

    fn capture_names(&self) -> Vec<&Ident> {
        self.captures.iter().map(|capture| &capture.name).collect()
    }

    /// The captures as they travel: a right-nested tuple of [`wire_type`]s.
    fn wire_captures_type(&self) -> TokenStream {
        let types: Vec<TokenStream> = self
            .capture_types()
            .into_iter()
            .map(|ty| wire_type(&self.krate, ty))
            .collect();
        model::nested(&types)
    }

    /// The wire tuple of the captures, from one expression per capture.
    fn wire_captures(&self, values: &[TokenStream]) -> TokenStream {
        let values: Vec<TokenStream> = self
            .captures
            .iter()
            .zip(values)
            .map(|(capture, value)| to_wire(&self.krate, &capture.ty, value))
            .collect();
        model::nested(&values)
    }

    /// `impl Block for ...`: identity, captures, and how to run the body.
    fn block_impl(
        &self,
        run: &TokenStream,
        run_stream: &TokenStream,
        into_captures: &TokenStream,
    ) -> TokenStream {
        let Self {
            krate,
            ident,
            name,
            hash,
            ..
        } = self;
        let line = proc_macro2::Literal::u32_unsuffixed(u32::try_from(self.line).unwrap_or(0));
        let captures_ty = self.wire_captures_type();
        let value = self.output.value();
        let wire_value = wire_type(krate, value);
        let output_to_wire = to_wire(krate, value, &quote!(output));
        let output_from_wire = from_wire(value, &quote!(wire));
        let captures_text = self
            .captures
            .iter()
            .map(|capture| {
                let ty = &capture.ty;
                format!("{}: {}", capture.name, render(quote!(#ty)))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let output_text = render(quote!(#value));
        let nested = self.root.map(|root| {
            let root = proc_macro2::Literal::u64_suffixed(root);
            quote!(.nested_in(::core::module_path!(), #root))
        });
        let streaming = self.stream.then(|| quote!(.streaming()));
        let bounds = self.checked_types().into_iter().map(|ty| {
            quote_spanned! {ty.span()=> for<'__wire> #ty: #krate::__private::Capture }
        });
        quote! {
            impl #krate::__private::Block for #ident where #(#bounds),* {
                type Captures = #captures_ty;
                type Output = #value;
                type Wire = #wire_value;
                const INFO: #krate::__private::BlockInfo = #krate::__private::BlockInfo::new(
                    ::core::module_path!(),
                    #hash,
                    #name,
                    #captures_text,
                    #output_text,
                    ::core::file!(),
                    #line,
                )#nested #streaming;
                #[allow(clippy::unused_unit, reason = "a block without captures has `()`")]
                fn into_captures(self) -> Self::Captures {
                    #into_captures
                }
                fn to_wire(output: Self::Output) -> Self::Wire {
                    #output_to_wire
                }
                fn from_wire(wire: Self::Wire) -> Self::Output {
                    #output_from_wire
                }
                fn run(
                    __captures: Self::Captures,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<Self::Output, #krate::__private::RemoteError>,
                > + 'static {
                    #run
                }
                #run_stream
            }
        }
    }

    /// `let (a, (b, ())) = __captures;` then the call of the body function.
    fn run_body(&self, body_fn: &TokenStream) -> TokenStream {
        let krate = &self.krate;
        let names = self.capture_names();
        let pattern = model::nested(&names);
        let unwrapped = self.unwrapped_captures();
        let call = quote!(#body_fn(#(#names),*));
        let call = if self.output.flattened.is_some() {
            call
        } else {
            quote!(#krate::__private::ok(#call))
        };
        quote! {
            let #pattern = __captures;
            #(#unwrapped)*
            #call
        }
    }

    /// A stream block's `run_stream`: the captures bound, then the body's stream of items.
    fn stream_body(&self, body_fn: &TokenStream) -> TokenStream {
        let krate = &self.krate;
        let names = self.capture_names();
        let pattern = model::nested(&names);
        let unwrapped = self.unwrapped_captures();
        quote! {
            let #pattern = __captures;
            #(#unwrapped)*
            ::core::option::Option::Some(#krate::__private::items_of(#body_fn(#(#names),*)))
        }
    }

    /// `let name = name.0;` for each capture that travels as a byte string.
    fn unwrapped_captures(&self) -> Vec<TokenStream> {
        self.captures
            .iter()
            .filter(|capture| is_byte_vec(&capture.ty))
            .map(|capture| {
                let name = &capture.name;
                let value = from_wire(&capture.ty, &quote!(#name));
                quote!(let #name = #value;)
            })
            .collect()
    }

    /// The native `actix::Message` impl.
    fn message_impl(&self) -> TokenStream {
        let Self { krate, ident, .. } = self;
        let value = self.output.value();
        quote! {
            #[cfg(not(target_arch = "wasm32"))]
            impl #krate::__private::actix::Message for #ident {
                type Result = ::core::result::Result<#value, #krate::__private::RemoteError>;
            }
        }
    }

    /// `<Ident as Parts>` (`StreamParts` for a stream block): the registry entry and the call
    /// go through this one path, with one span, so that an unsatisfied bound of the block is
    /// reported once.
    fn parts(&self) -> TokenStream {
        let Self { krate, ident, .. } = self;
        if self.stream {
            quote!(<#ident as #krate::__private::StreamParts>)
        } else {
            quote!(<#ident as #krate::__private::Parts>)
        }
    }

    /// The link-time registration, outside `submit!` so that its errors match the call's.
    fn registration(&self) -> TokenStream {
        let krate = &self.krate;
        let parts = self.parts();
        quote! {
            const _: () = {
                const __ENTRY: #krate::__private::BlockEntry = #parts::PARTS.0;
                #krate::__private::inventory::submit! { __ENTRY }
            };
        }
    }
}

/// What a `remote!`-like macro makes of its block, and which call the block expression ends
/// with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `remote!`: one result, a `RemoteCall<T>` to one target.
    Call,
    /// `remote_stream!`: a stream of items, a `RemoteStream<T>` from one target.
    Stream,
    /// `remote_all!`: a `RemoteAll<T>` to each of several targets.
    All,
}

impl Kind {
    /// The macro as the user writes it.
    fn macro_name(self) -> &'static str {
        match self {
            Self::Call => "remote!",
            Self::Stream => "remote_stream!",
            Self::All => "remote_all!",
        }
    }

    /// The type the macro evaluates to, for a block of result (or item) `value`.
    fn value_type(self, krate: &TokenStream, value: &TokenStream) -> TokenStream {
        match self {
            Self::Call => quote!(#krate::__private::RemoteCall<#value>),
            Self::Stream => quote!(#krate::__private::RemoteStream<#value>),
            Self::All => quote!(#krate::__private::RemoteAll<#value>),
        }
    }

    /// The call of the block (`parts`, from [`Block::parts`]), built from `value`, on
    /// `target`.
    fn call(
        self,
        krate: &TokenStream,
        parts: &TokenStream,
        target: &syn::Expr,
        value: &TokenStream,
    ) -> TokenStream {
        match self {
            Self::Call | Self::Stream => quote_spanned! {target.span()=>
                (#parts::PARTS.1)(#target, #value)
            },
            Self::All => quote_spanned! {target.span()=>
                (#parts::ALL)(#krate::__private::targets(#target), #value)
            },
        }
    }
}

/// Expands `remote!`: the block's items and its call, or on error the error and a stub of
/// the declared type, so that one mistake gives one error.
pub(crate) fn remote(input: RemoteInput, location: (usize, usize)) -> TokenStream {
    expand_kind(input, location, Kind::Call)
}

/// Expands `remote_stream!` as [`remote`] does `remote!`.
pub(crate) fn remote_stream(input: RemoteInput, location: (usize, usize)) -> TokenStream {
    expand_kind(input, location, Kind::Stream)
}

/// Expands `remote_all!`: the items of `remote!` and a call on each target.
pub(crate) fn remote_all(input: RemoteInput, location: (usize, usize)) -> TokenStream {
    expand_kind(input, location, Kind::All)
}

fn expand_kind(input: RemoteInput, location: (usize, usize), kind: Kind) -> TokenStream {
    let stub = remote_stub(&input, kind);
    if input.stub {
        return quote!({ #stub });
    }
    match remote_items(input, location, kind) {
        Ok(tokens) => tokens,
        Err(error) => {
            let error = error.into_compile_error();
            quote!({ #error #stub })
        }
    }
}

/// What a failed `remote!` evaluates to: its target and captures are used (no unused
/// warnings) and its value is a `RemoteCall` (`RemoteStream`, `RemoteAll`) of the declared
/// type, if that type is valid.
fn remote_stub(input: &RemoteInput, kind: Kind) -> TokenStream {
    let krate = &input.krate;
    let target = &input.target;
    let names = input
        .captures
        .iter()
        .map(|capture| &capture.name)
        .filter(|name| {
            let name = name.to_string();
            name != "self" && !name.starts_with("__")
        });
    let value = match &input.output {
        Some(ty) if model::check_type(ty, "").is_ok() => {
            let output = Output::of(Some(ty.clone()), kind == Kind::Stream);
            let value = output.value();
            quote!(#value)
        }
        Some(_) => quote!(_),
        None => quote!(()),
    };
    let value = kind.value_type(krate, &value);
    quote! {
        let _ = &(#target);
        #(let _ = &#names;)*
        #krate::__private::never::<#value>()
    }
}

/// The block's items and its call.
fn remote_items(
    input: RemoteInput,
    (line, column): (usize, usize),
    kind: Kind,
) -> syn::Result<TokenStream> {
    let RemoteInput {
        krate,
        name,
        root,
        target,
        captures,
        output,
        body,
        brace,
        ..
    } = input;
    let mut errors = Errors::default();
    let named = name.is_some();
    let captures: Vec<Capture> = captures
        .into_iter()
        .filter_map(|capture| match capture.ty {
            Some(ty) => Some(Capture {
                name: capture.name,
                ty,
            }),
            None => {
                let message = if named {
                    format!(
                        "`#[distributed]` cannot see the type of `{0}` (a typed parameter, \
                         `let {0}: T` or `let {0} = remote!(.. -> T ..)` shows it): write `{0}: Type`",
                        capture.name
                    )
                } else {
                    format!(
                        "`{1}` capture `{0}` needs a type: write `{0}: Type`",
                        capture.name,
                        kind.macro_name()
                    )
                };
                errors.push(syn::Error::new_spanned(&capture.name, message));
                None
            }
        })
        .collect();
    errors.check(model::validate_captures(&captures));
    if let Some(ty) = &output {
        errors.check(model::check_type(ty, "result types"));
    }
    errors.check(model::check_body(&body));
    errors.finish()?;
    let stream = kind == Kind::Stream;
    let output = Output::of(output, stream);
    let hash = Block::hash(&captures, &output, body.clone(), stream);
    let root = root.map(|root| root.base10_parse::<u64>()).transpose()?;
    // The blocks nested in this one belong to this one's entry point.
    let body = crate::nesting::mark_nested(body, root.unwrap_or(hash));
    let braced_body = {
        let mut group = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, body);
        group.set_span(brace.span.join());
        group
    };
    let name = match name {
        Some(name) => quote!(::core::concat!(::core::module_path!(), "::", #name)),
        None => {
            let (line, column) = (
                proc_macro2::Literal::usize_unsuffixed(line),
                proc_macro2::Literal::usize_unsuffixed(column),
            );
            quote!(::core::concat!(::core::module_path!(), "@", #line, ":", #column))
        }
    };
    let block = Block {
        hash,
        root,
        krate,
        ident: Ident::new("__RemoteBlock", Span::call_site()),
        captures,
        output,
        name,
        line,
        stream,
    };
    let names = block.capture_names();
    let types = block.capture_types();
    let body_ty = &block.output.body;
    let krate = &block.krate;
    let (run, run_stream) = if stream {
        let body_fn = quote! {
            async fn __body(#(#names: #types),*)
                -> impl #krate::__private::Stream<Item = #body_ty> + 'static #braced_body
        };
        let items = block.stream_body(&quote!(__body));
        let run_stream = quote! {
            fn run_stream(
                __captures: Self::Captures,
            ) -> ::core::option::Option<
                #krate::__private::LocalBoxStream<
                    'static,
                    ::core::result::Result<Self::Output, #krate::__private::RemoteError>,
                >,
            > {
                #body_fn
                #items
            }
        };
        let run = quote! {
            let _ = __captures;
            #krate::__private::not_a_call(<Self as #krate::__private::Block>::INFO.name())
        };
        (run, run_stream)
    } else {
        let body_fn = quote! {
            async fn __body(#(#names: #types),*) -> #body_ty #braced_body
        };
        let run = block.run_body(&quote!(__body));
        (quote! { #body_fn #run }, TokenStream::new())
    };
    let into_captures = {
        let pattern = model::nested(&names);
        let values: Vec<TokenStream> = names.iter().map(|name| quote!(#name)).collect();
        let wire = block.wire_captures(&values);
        quote! {
            let #pattern = self.0;
            #wire
        }
    };
    let block_impl = block.block_impl(&run, &run_stream, &into_captures);
    let checks = block.checks();
    let message_impl = block.message_impl();
    let registration = block.registration();
    let captures_ty = model::nested(&types);
    let value = model::nested(&names);
    let ident = &block.ident;
    let parts = block.parts();
    let call = kind.call(krate, &parts, &target, &quote!(#ident(#value)));
    Ok(quote! {
        {
            struct #ident(#captures_ty);
            #checks
            #block_impl
            #message_impl
            #registration
            #call
        }
    })
}

/// Whether `ty` is spelled `Vec<u8>` (also `std::vec::Vec<u8>`, `alloc::vec::Vec<u8>`): such
/// a capture or result travels as one byte string instead of a sequence of bytes. The bytes
/// on the wire are the same (a length, then the bytes); encoding and decoding are one copy
/// instead of one call per byte.
fn is_byte_vec(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    if path.qself.is_some() {
        return false;
    }
    let segments: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    let std_path = match segments.as_slice() {
        [last] => last == "Vec",
        [root, module, last] => {
            (root == "std" || root == "alloc") && module == "vec" && last == "Vec"
        }
        _ => false,
    };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    let mut args = args.args.iter();
    let (Some(syn::GenericArgument::Type(Type::Path(element))), None) = (args.next(), args.next())
    else {
        return false;
    };
    std_path && element.qself.is_none() && element.path.is_ident("u8")
}

/// The type a capture or result of type `ty` travels as.
fn wire_type(krate: &TokenStream, ty: &Type) -> TokenStream {
    if is_byte_vec(ty) {
        quote!(#krate::__private::ByteVec)
    } else {
        quote!(#ty)
    }
}

/// `value` (of type `ty`) as it travels.
fn to_wire(krate: &TokenStream, ty: &Type, value: &TokenStream) -> TokenStream {
    if is_byte_vec(ty) {
        quote!(#krate::__private::ByteVec(#value))
    } else {
        quote!(#value)
    }
}

/// A travelled `value` back as type `ty`.
fn from_wire(ty: &Type, value: &TokenStream) -> TokenStream {
    if is_byte_vec(ty) {
        quote!(#value.0)
    } else {
        quote!(#value)
    }
}

/// Independent mistakes, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn check(&mut self, result: syn::Result<()>) {
        if let Err(error) = result {
            self.push(error);
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Expands `#[remote_block]`.
pub(crate) fn remote_block(
    args: BlockArgs,
    item: &ItemFn,
    line: usize,
) -> syn::Result<TokenStream> {
    let krate = match args.krate {
        Some(path) => quote!(#path),
        None => runtime_path()?,
    };
    if item.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            item.sig.fn_token,
            "`#[remote_block]` functions must be `async fn`",
        ));
    }
    if !item.sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.sig.generics,
            "`#[remote_block]` functions cannot be generic: blocks have concrete types",
        ));
    }
    let mut captures = Vec::new();
    for input in &item.sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "`#[remote_block]` functions cannot take `self`",
                ));
            }
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                    captures.push(Capture {
                        name: pat.ident.clone(),
                        ty: (*typed.ty).clone(),
                    });
                }
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "`#[remote_block]` parameters must be plain identifiers",
                    ));
                }
            },
        }
    }
    model::validate_captures(&captures)?;
    let output = match &item.sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => {
            model::check_type(ty, "result types")?;
            Some((**ty).clone())
        }
    };
    let output = Output::new(output);
    let fn_name = &item.sig.ident;
    let ident = message_ident(args.message, item)?;
    let name_text = format!("::{fn_name}");
    let hash = Block::hash(&captures, &output, quote!(#item), false);
    // A named block is an entry point; the blocks in its body belong to it.
    let mut item = item.clone();
    let body = &item.block;
    *item.block = syn::parse2(crate::nesting::mark_nested(quote!(#body), hash))?;
    let block = Block {
        hash,
        root: None,
        krate,
        ident,
        captures,
        output,
        name: quote!(::core::concat!(::core::module_path!(), #name_text)),
        line,
        stream: false,
    };
    let names = block.capture_names();
    let run = block.run_body(&quote!(#fn_name));
    let into_captures = block.wire_captures(
        &names
            .iter()
            .map(|name| quote!(self.#name))
            .collect::<Vec<_>>(),
    );
    let message = message_struct(&block, fn_name);
    let block_impl = block.block_impl(&run, &TokenStream::new(), &into_captures);
    let checks = block.checks();
    let message_impl = block.message_impl();
    let registration = block.registration();
    let methods = message_methods(&block);
    Ok(quote! {
        #item
        #message
        #checks
        #block_impl
        #message_impl
        #registration
        #methods
    })
}

/// The message type's name: `message = "Name"`, or the CamelCase of the function's name.
/// Either must differ from every type the signature names by a single identifier, which
/// would be the same name in the same module.
fn message_ident(message: Option<Ident>, item: &ItemFn) -> syn::Result<Ident> {
    let fn_name = &item.sig.ident;
    let given = message.is_some();
    let ident = message.unwrap_or_else(|| {
        format_ident!(
            "{}",
            camel_case(&fn_name.to_string()),
            span = fn_name.span()
        )
    });
    let Some(clash) = model::type_named(&item.sig, &ident) else {
        return Ok(ident);
    };
    Err(if given {
        syn::Error::new_spanned(
            &ident,
            format!(
                "`#[remote_block]` message `{ident}` is already the name of a type in the \
                 signature of `{fn_name}`: choose another name"
            ),
        )
    } else {
        syn::Error::new_spanned(
            clash,
            format!(
                "`#[remote_block]` would name the message of `{fn_name}` `{ident}`, which is \
                 already this type: rename it with `#[remote_block(message = \"Get{ident}\")]`"
            ),
        )
    })
}

/// `pub struct Add { pub x: u32, pub y: u32 }`, or `pub struct Stats;` without parameters,
/// with its `Debug` impl.
fn message_struct(block: &Block, fn_name: &Ident) -> TokenStream {
    let ident = &block.ident;
    let names = block.capture_names();
    let types = block.capture_types();
    let doc = format!("Runs [`{fn_name}`] on a peer: send it with `On` or call [`{ident}::on`].");
    let ident_text = ident.to_string();
    if names.is_empty() {
        return quote! {
            #[doc = #doc]
            #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::default::Default)]
            pub struct #ident;

            impl ::core::fmt::Debug for #ident {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(#ident_text)
                }
            }
        };
    }
    let field_docs = names.iter().map(|name| format!("The `{name}` argument."));
    quote! {
        #[doc = #doc]
        pub struct #ident {
            #(#[doc = #field_docs] pub #names: #types,)*
        }

        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#ident_text).finish_non_exhaustive()
            }
        }
    }
}

/// `Add::new(x, y)` and `Add::on(self, peer)`.
fn message_methods(block: &Block) -> TokenStream {
    let Block { krate, ident, .. } = block;
    let names = block.capture_names();
    let types = block.capture_types();
    let parts = block.parts();
    let value_ty = block.output.value();
    let value = if names.is_empty() {
        quote!(Self)
    } else {
        quote!(Self { #(#names),* })
    };
    quote! {
        impl #ident {
            /// The message, with one argument per parameter of the function.
            #[allow(clippy::too_many_arguments, reason = "one per parameter of the function")]
            pub const fn new(#(#names: #types),*) -> Self {
                #value
            }

            /// Runs this block on `peer`.
            pub fn on(self, peer: #krate::PeerId) -> #krate::RemoteCall<#value_ty> {
                (#parts::PARTS.1)(peer, self)
            }
        }
    }
}

/// `add_numbers` -> `AddNumbers`.
fn camel_case(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// The path of the runtime crate as the calling crate names it.
pub(crate) fn runtime_path() -> syn::Result<TokenStream> {
    use proc_macro_crate::{FoundCrate, crate_name};
    match crate_name("distributed-scope") {
        Ok(FoundCrate::Itself) => Ok(quote!(::distributed_scope)),
        Ok(FoundCrate::Name(name)) => {
            let ident = Ident::new(&name, Span::call_site());
            Ok(quote!(::#ident))
        }
        Err(error) => Err(syn::Error::new(
            Span::call_site(),
            format!(
                "cannot find the `distributed-scope` crate ({error}); add `crate = path` to the attribute"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vec_of_u8_travels_as_a_byte_string() {
        for spelled in ["Vec<u8>", "std::vec::Vec<u8>", "::alloc::vec::Vec<u8>"] {
            let ty: Type = syn::parse_str(spelled).unwrap();
            assert!(is_byte_vec(&ty), "{spelled}");
        }
        for spelled in [
            "Vec<u16>",
            "Vec<i8>",
            "my::Vec<u8>",
            "VecDeque<u8>",
            "Vec<Vec<u8>>",
            "[u8; 4]",
        ] {
            let ty: Type = syn::parse_str(spelled).unwrap();
            assert!(!is_byte_vec(&ty), "{spelled}");
        }
    }

    #[test]
    fn camel_cases_function_names() {
        assert_eq!(camel_case("add"), "Add");
        assert_eq!(camel_case("search_and_display"), "SearchAndDisplay");
    }

    #[test]
    fn remote_expands_to_one_block_type() {
        let input: RemoteInput = syn::parse_quote!(krate; server, [x: u32] -> u32 { x + 1 });
        let tokens = remote(input, (3, 9)).to_string();
        assert!(tokens.contains("struct __RemoteBlock"));
        assert!(tokens.contains("inventory :: submit"));
        assert!(tokens.contains("\"@\" , 3 , \":\" , 9"));
    }

    #[test]
    fn remote_all_expands_to_the_same_block_and_a_call_on_each_target() {
        let source = "krate; servers, [x: u32] -> u32 { x + 1 }";
        let one = remote(syn::parse_str(source).unwrap(), (3, 9)).to_string();
        let all = remote_all(syn::parse_str(source).unwrap(), (3, 9)).to_string();
        assert!(all.contains("(< __RemoteBlock as krate :: __private :: Parts > :: ALL) (krate :: __private :: targets (servers)"), "{all}");
        assert!(!all.contains("PARTS . 1"), "{all}");
        // Everything before the call (name, id, registration) is the same as `remote!`'s.
        let items = |tokens: &str| tokens[..tokens.rfind("(< __RemoteBlock").unwrap()].to_owned();
        assert_eq!(items(&one), items(&all));
        let failed = remote_all(syn::parse_str("krate; servers, [x] { x }").unwrap(), (1, 1));
        assert!(
            failed
                .to_string()
                .contains("never :: < krate :: __private :: RemoteAll < () > >")
        );
    }

    /// The token hash the expansion passes to `BlockInfo::new`.
    fn emitted_hash(source: &str) -> String {
        let input: RemoteInput = syn::parse_str(source).unwrap();
        let tokens = remote(input, (1, 1)).to_string();
        let start = tokens.find("module_path ! () ,").unwrap() + "module_path ! () ,".len();
        let rest = tokens[start..].trim_start();
        rest[..rest.find(' ').unwrap()].to_owned()
    }

    #[test]
    fn block_ids_ignore_formatting_and_lines_but_not_the_body() {
        let a = emitted_hash("krate; server, [x: u32] -> Vec<u32> { let y = x + 1; vec![y; 3] }");
        let b = emitted_hash(
            "krate;\n\n\n    server,\n    [x:u32]->Vec< u32 >{\n        let y=x+1;\n        vec![ y;3 ]\n    }",
        );
        let c = emitted_hash("krate; server, [x: u32] -> Vec<u32> { let y = x + 2; vec![y; 3] }");
        assert!(a.ends_with("u64"), "{a}");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    fn expand_block(args: BlockArgs, item: &ItemFn) -> syn::Result<String> {
        remote_block(args, item, 1).map(|tokens| tokens.to_string())
    }

    fn args(message: Option<&str>) -> BlockArgs {
        BlockArgs {
            krate: Some(syn::parse_quote!(krate)),
            message: message.map(|name| Ident::new(name, Span::call_site())),
        }
    }

    #[test]
    fn remote_block_messages_are_named_after_the_function_or_the_argument() {
        let item: ItemFn = syn::parse_quote!(
            async fn add(x: u32, y: u32) -> u32 {
                x + y
            }
        );
        let tokens = expand_block(args(None), &item).unwrap();
        assert!(tokens.contains("pub struct Add {"), "{tokens}");
        assert!(
            tokens.contains("pub const fn new (x : u32 , y : u32) -> Self"),
            "{tokens}"
        );
        let tokens = expand_block(args(Some("Sum")), &item).unwrap();
        assert!(tokens.contains("pub struct Sum {"), "{tokens}");
        assert!(!tokens.contains("struct Add"), "{tokens}");
    }

    #[test]
    fn remote_blocks_without_parameters_get_a_unit_message() {
        let item: ItemFn = syn::parse_quote!(
            async fn worker_stats() -> u64 {
                7
            }
        );
        let tokens = expand_block(args(None), &item).unwrap();
        assert!(tokens.contains("pub struct WorkerStats ;"), "{tokens}");
        assert!(
            tokens.contains("pub const fn new () -> Self { Self }"),
            "{tokens}"
        );
    }

    #[test]
    fn a_message_named_like_a_type_of_the_signature_is_an_error() {
        let item: ItemFn = syn::parse_quote!(
            async fn job_config() -> JobConfig {
                todo()
            }
        );
        let error = expand_block(args(None), &item).unwrap_err();
        assert!(
            error.to_string().contains("message = \"GetJobConfig\""),
            "{error}"
        );
        let tokens = expand_block(args(Some("FetchJobConfig")), &item).unwrap();
        assert!(tokens.contains("pub struct FetchJobConfig ;"), "{tokens}");
    }

    #[test]
    fn block_arguments_parse_in_any_order() {
        let args: BlockArgs = syn::parse_quote!(message = "Sum", crate = ::scope);
        assert_eq!(args.message.unwrap(), "Sum");
        assert!(args.krate.is_some());
        assert!(syn::parse_str::<BlockArgs>("message = \"two words\"").is_err());
        assert!(syn::parse_str::<BlockArgs>("message = \"r#type\"").is_ok());
        assert!(syn::parse_str::<BlockArgs>("crate = a, crate = b").is_err());
    }

    #[test]
    fn self_in_a_plain_remote_body_is_an_error() {
        let input: RemoteInput = syn::parse_quote!(krate; server, [] -> u32 { self.count });
        let error = remote_items(input, (1, 1), Kind::Call).err().unwrap();
        assert!(error.to_string().contains("cannot use `self`"), "{error}");
    }

    #[test]
    fn duplicate_captures_are_an_error() {
        let input: RemoteInput = syn::parse_quote!(krate; server, [x: u32, x: u32] { x });
        let error = remote_items(input, (1, 1), Kind::Call).err().unwrap();
        assert!(error.to_string().contains("captured twice"));
    }
}
