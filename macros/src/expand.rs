//! Code generation: one function per generated item.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
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
    line: usize,
}

impl Block {
    fn hash(captures: &[Capture], output: &Output, body: TokenStream) -> u64 {
        let mut fnv = Fnv::new();
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

    fn capture_names(&self) -> Vec<&Ident> {
        self.captures.iter().map(|capture| &capture.name).collect()
    }

    /// `impl Block for ...`: identity, captures, and how to run the body.
    fn block_impl(&self, run: &TokenStream, into_captures: &TokenStream) -> TokenStream {
        let Self {
            krate,
            ident,
            name,
            hash,
            ..
        } = self;
        let line = proc_macro2::Literal::u32_unsuffixed(u32::try_from(self.line).unwrap_or(0));
        let captures_ty = model::nested(&self.capture_types());
        let value = self.output.value();
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
        quote! {
            impl #krate::__private::Block for #ident {
                type Captures = #captures_ty;
                type Output = #value;
                const INFO: #krate::__private::BlockInfo = #krate::__private::BlockInfo::new(
                    ::core::module_path!(),
                    #hash,
                    #name,
                    #captures_text,
                    #output_text,
                    ::core::file!(),
                    #line,
                );
                fn into_captures(self) -> Self::Captures {
                    #into_captures
                }
                fn run(
                    __captures: Self::Captures,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<Self::Output, #krate::__private::RemoteError>,
                > + 'static {
                    #run
                }
            }
        }
    }

    /// `let (a, (b, ())) = __captures;` then the call of the body function.
    fn run_body(&self, body_fn: &TokenStream) -> TokenStream {
        let krate = &self.krate;
        let names = self.capture_names();
        let pattern = model::nested(&names);
        let call = quote!(#body_fn(#(#names),*));
        let call = if self.output.flattened.is_some() {
            call
        } else {
            quote!(#krate::__private::ok(#call))
        };
        quote! {
            let #pattern = __captures;
            #call
        }
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

    /// The link-time registration.
    fn registration(&self) -> TokenStream {
        let Self { krate, ident, .. } = self;
        quote! {
            #krate::__private::inventory::submit! {
                #krate::__private::BlockEntry::of::<#ident>()
            }
        }
    }
}

/// Expands `remote!`.
pub(crate) fn remote(
    input: RemoteInput,
    (line, column): (usize, usize),
) -> syn::Result<TokenStream> {
    let RemoteInput {
        krate,
        name,
        target,
        captures,
        bracket,
        output,
        body,
        brace,
    } = input;
    let mut missing: Option<syn::Error> = None;
    let captures: Vec<Capture> = captures
        .into_iter()
        .filter_map(|capture| match capture.ty {
            Some(ty) => Some(Capture {
                name: capture.name,
                ty,
            }),
            None => {
                let error = syn::Error::new_spanned(
                    &capture.name,
                    format!(
                        "`remote!` capture `{0}` needs a type: write `{0}: Type`",
                        capture.name
                    ),
                );
                match &mut missing {
                    Some(first) => first.combine(error),
                    None => missing = Some(error),
                }
                None
            }
        })
        .collect();
    let _ = bracket;
    let checks = [
        missing.map_or(Ok(()), Err),
        model::validate_captures(&captures),
        output
            .as_ref()
            .map_or(Ok(()), |ty| model::check_type(ty, "result types")),
    ];
    let mut errors: Option<syn::Error> = None;
    for error in checks.into_iter().filter_map(Result::err) {
        match &mut errors {
            Some(first) => first.combine(error),
            None => errors = Some(error),
        }
    }
    if let Some(errors) = errors {
        return Err(errors);
    }
    let output = Output::new(output);
    let braced_body = {
        let mut group = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, body.clone());
        group.set_span(brace.span.join());
        group
    };
    let name = match name {
        Some(name) => quote!(#name),
        None => {
            let (line, column) = (
                proc_macro2::Literal::usize_unsuffixed(line),
                proc_macro2::Literal::usize_unsuffixed(column),
            );
            quote!(::core::concat!(::core::module_path!(), "@", #line, ":", #column))
        }
    };
    let block = Block {
        hash: Block::hash(&captures, &output, body),
        krate: krate.clone(),
        ident: Ident::new("__RemoteBlock", Span::call_site()),
        captures,
        output,
        name,
        line,
    };
    let names = block.capture_names();
    let types = block.capture_types();
    let body_ty = &block.output.body;
    let body_fn = quote! {
        async fn __body(#(#names: #types),*) -> #body_ty #braced_body
    };
    let run = block.run_body(&quote!(__body));
    let run = quote! { #body_fn #run };
    let block_impl = block.block_impl(&run, &quote!(self.0));
    let message_impl = block.message_impl();
    let registration = block.registration();
    let captures_ty = model::nested(&types);
    let value = model::nested(&names);
    let ident = &block.ident;
    let value_ty = block.output.value();
    let call = quote_spanned! {target_span(&target)=>
        #krate::__private::RemoteCall::<#value_ty>::new::<#ident>(#target, #ident(#value))
    };
    Ok(quote! {
        {
            struct #ident(#captures_ty);
            #block_impl
            #message_impl
            #registration
            #call
        }
    })
}

fn target_span(target: &syn::Expr) -> Span {
    syn::spanned::Spanned::span(target)
}

/// Expands `#[remote_block]`.
pub(crate) fn remote_block(args: BlockArgs, item: ItemFn, line: usize) -> syn::Result<TokenStream> {
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
    let ident = format_ident!(
        "{}",
        camel_case(&fn_name.to_string()),
        span = fn_name.span()
    );
    let name_text = format!("::{fn_name}");
    let block = Block {
        hash: Block::hash(&captures, &output, quote!(#item)),
        krate: krate.clone(),
        ident,
        captures,
        output,
        name: quote!(::core::concat!(::core::module_path!(), #name_text)),
        line,
    };
    let names = block.capture_names();
    let types = block.capture_types();
    let run = block.run_body(&quote!(#fn_name));
    let into_captures = model::nested(
        &names
            .iter()
            .map(|name| quote!(self.#name))
            .collect::<Vec<_>>(),
    );
    let block_impl = block.block_impl(&run, &into_captures);
    let message_impl = block.message_impl();
    let registration = block.registration();
    let ident = &block.ident;
    let value_ty = block.output.value();
    let doc = format!("Runs [`{fn_name}`] on a peer: send it with `On` or call [`{ident}::on`].");
    let field_docs = names.iter().map(|name| format!("The `{name}` argument."));
    Ok(quote! {
        #item

        #[doc = #doc]
        #[derive(Debug)]
        pub struct #ident {
            #(#[doc = #field_docs] pub #names: #types,)*
        }

        #block_impl
        #message_impl
        #registration

        impl #ident {
            /// Runs this block on `peer`.
            pub fn on(self, peer: #krate::PeerId) -> #krate::RemoteCall<#value_ty> {
                #krate::RemoteCall::new(peer, self)
            }
        }
    })
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
fn runtime_path() -> syn::Result<TokenStream> {
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
    fn camel_cases_function_names() {
        assert_eq!(camel_case("add"), "Add");
        assert_eq!(camel_case("search_and_display"), "SearchAndDisplay");
    }

    #[test]
    fn remote_expands_to_one_block_type() {
        let input: RemoteInput = syn::parse_quote!(krate; server, [x: u32] -> u32 { x + 1 });
        let tokens = remote(input, (3, 9)).unwrap().to_string();
        assert!(tokens.contains("struct __RemoteBlock"));
        assert!(tokens.contains("inventory :: submit"));
        assert!(tokens.contains("\"@\" , 3 , \":\" , 9"));
    }

    #[test]
    fn duplicate_captures_are_an_error() {
        let input: RemoteInput = syn::parse_quote!(krate; server, [x: u32, x: u32] { x });
        let error = remote(input, (1, 1)).unwrap_err();
        assert!(error.to_string().contains("captured twice"));
    }
}
