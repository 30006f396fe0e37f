//! The validated model of a block: captures with their types, the result type, and the
//! rules that involve several pieces. Keeps the user's tokens for spans.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit::Visit;
use syn::{GenericArgument, Ident, PathArguments, Type};

/// A capture whose type is known.
pub(crate) struct Capture {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

/// What the block returns, and whether the call flattens it.
pub(crate) struct Output {
    /// The type the body returns, as spelled (`()` if omitted).
    pub(crate) body: Type,
    /// `T` of `Result<T, RemoteError>` when the body's type is spelled so.
    pub(crate) flattened: Option<Type>,
}

impl Output {
    pub(crate) fn new(ty: Option<Type>) -> Self {
        let body = ty.unwrap_or_else(|| syn::parse_quote!(()));
        let flattened = remote_result_ok(&body).cloned();
        Self { body, flattened }
    }

    /// The output of a block: a stream's items are never flattened.
    pub(crate) fn of(ty: Option<Type>, stream: bool) -> Self {
        if stream {
            Self {
                body: ty.unwrap_or_else(|| syn::parse_quote!(())),
                flattened: None,
            }
        } else {
            Self::new(ty)
        }
    }

    /// The type a call yields inside `Ok`.
    pub(crate) fn value(&self) -> &Type {
        self.flattened.as_ref().unwrap_or(&self.body)
    }
}

/// `T` if `ty` is spelled `Result<T, RemoteError>` (any path ending so).
fn remote_result_ok(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    let (Some(ok), Some(Type::Path(error)), None) = (types.next(), types.next(), types.next())
    else {
        return None;
    };
    let is_remote_error = error
        .path
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "RemoteError");
    is_remote_error.then_some(ok)
}

/// Checks one capture or result type: owned and concrete.
pub(crate) fn check_type(ty: &Type, what: &str) -> syn::Result<()> {
    struct Finder<'a> {
        what: &'a str,
        error: Option<syn::Error>,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type(&mut self, ty: &'ast Type) {
            let problem = match ty {
                Type::Reference(_) => {
                    Some("cannot be a reference: use an owned type such as `String` or `Vec<T>`")
                }
                Type::ImplTrait(_) => Some("cannot be `impl Trait`: name a concrete type"),
                Type::Infer(_) => Some("cannot be `_`: spell the type out"),
                Type::TraitObject(_) => Some("cannot be a trait object: name a concrete type"),
                Type::Ptr(_) => Some("cannot be a raw pointer"),
                Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self") => {
                    Some("cannot be `Self`: a block body has no `Self`; name the type")
                }
                _ => None,
            };
            if let Some(problem) = problem {
                let error =
                    syn::Error::new_spanned(ty, format!("`remote!` {} {problem}", self.what));
                match &mut self.error {
                    Some(first) => first.combine(error),
                    None => self.error = Some(error),
                }
                return;
            }
            syn::visit::visit_type(self, ty);
        }
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if lifetime.ident != "static" {
                let error = syn::Error::new_spanned(
                    lifetime,
                    format!("`remote!` {} cannot borrow: use an owned type", self.what),
                );
                match &mut self.error {
                    Some(first) => first.combine(error),
                    None => self.error = Some(error),
                }
            }
        }
    }
    let mut finder = Finder { what, error: None };
    finder.visit_type(ty);
    finder.error.map_or(Ok(()), Err)
}

/// The first type in `sig` (a parameter or the result, at any depth) spelled as the single
/// identifier `name`.
pub(crate) fn type_named<'a>(sig: &'a syn::Signature, name: &Ident) -> Option<&'a syn::TypePath> {
    struct Finder<'a, 'b> {
        name: &'b Ident,
        found: Option<&'a syn::TypePath>,
    }
    impl<'a> Visit<'a> for Finder<'a, '_> {
        fn visit_type_path(&mut self, path: &'a syn::TypePath) {
            if self.found.is_none() && path.qself.is_none() && path.path.is_ident(self.name) {
                self.found = Some(path);
            }
            syn::visit::visit_type_path(self, path);
        }
    }
    let mut finder = Finder { name, found: None };
    for input in &sig.inputs {
        if let syn::FnArg::Typed(typed) = input {
            finder.visit_type(&typed.ty);
        }
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        finder.visit_type(ty);
    }
    finder.found
}

/// Checks the captures together: names, duplicates, types.
pub(crate) fn validate_captures(captures: &[Capture]) -> syn::Result<()> {
    let mut errors: Option<syn::Error> = None;
    let mut push = |error: syn::Error| match &mut errors {
        Some(first) => first.combine(error),
        None => errors = Some(error),
    };
    let mut seen = HashSet::new();
    for capture in captures {
        let name = capture.name.to_string();
        if name.starts_with("__") {
            push(syn::Error::new_spanned(
                &capture.name,
                "`remote!` capture names starting with `__` are reserved for generated code",
            ));
        }
        if name == "self" {
            push(syn::Error::new_spanned(
                &capture.name,
                "`remote!` cannot capture `self`: write `let this = self.clone();` and capture `this`",
            ));
        }
        if !seen.insert(name.clone()) {
            push(syn::Error::new_spanned(
                &capture.name,
                format!("`{name}` is captured twice in this `remote!`"),
            ));
        }
        if let Err(error) = check_type(&capture.ty, "capture types") {
            push(error);
        }
    }
    errors.map_or(Ok(()), Err)
}

/// Checks a block body for `self` and `Self`, which a body cannot have: it compiles as a
/// nested `async fn`, so rustc would call them unknown, or advise a closure.
///
/// Nested items (a `fn`, an `impl`) bring their own `self` and `Self` and are skipped, and
/// so are macro calls, except the standard ones whose arguments are expressions (`format!`,
/// `assert!`, ...): the tokens of other macros may be data, as in `stringify!(self)`. A body
/// that does not parse is left to rustc.
pub(crate) fn check_body(body: &TokenStream) -> syn::Result<()> {
    struct Finder {
        errors: Option<syn::Error>,
    }
    impl Finder {
        fn push(&mut self, error: syn::Error) {
            match &mut self.errors {
                Some(first) => first.combine(error),
                None => self.errors = Some(error),
            }
        }
    }
    impl<'ast> Visit<'ast> for Finder {
        fn visit_item(&mut self, _item: &'ast syn::Item) {}

        fn visit_expr_path(&mut self, path: &'ast syn::ExprPath) {
            if path.qself.is_none() && path.path.is_ident("self") {
                self.push(syn::Error::new_spanned(
                    path,
                    "`remote!` bodies cannot use `self`: write `let this = self.clone();` before \
                     the block, capture `this: Type` and use `this` inside",
                ));
            }
            syn::visit::visit_expr_path(self, path);
        }

        fn visit_path(&mut self, path: &'ast syn::Path) {
            if path.leading_colon.is_none()
                && let Some(first) = path.segments.first()
                && first.ident == "Self"
            {
                self.push(syn::Error::new_spanned(
                    &first.ident,
                    "`remote!` bodies have no `Self`: name the type",
                ));
            }
            syn::visit::visit_path(self, path);
        }

        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            const EXPRESSION_MACROS: &[&str] = &[
                "assert",
                "assert_eq",
                "assert_ne",
                "dbg",
                "debug_assert",
                "debug_assert_eq",
                "debug_assert_ne",
                "eprint",
                "eprintln",
                "format",
                "panic",
                "print",
                "println",
                "todo",
                "unimplemented",
                "unreachable",
                "write",
                "writeln",
            ];
            let known =
                mac.path.segments.last().is_some_and(|segment| {
                    EXPRESSION_MACROS.iter().any(|name| segment.ident == name)
                });
            let parser = syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
            if known && let Ok(args) = syn::parse::Parser::parse2(parser, mac.tokens.clone()) {
                for arg in &args {
                    self.visit_expr(arg);
                }
            }
        }
    }
    let Ok(stmts) = syn::parse::Parser::parse2(syn::Block::parse_within, body.clone()) else {
        return Ok(());
    };
    let mut finder = Finder { errors: None };
    for stmt in &stmts {
        finder.visit_stmt(stmt);
    }
    finder.errors.map_or(Ok(()), Err)
}

/// The right-nested tuple type, pattern and value of the captures: `(a, (b, ()))`.
pub(crate) fn nested<T: quote::ToTokens>(items: &[T]) -> TokenStream {
    items
        .iter()
        .rev()
        .fold(quote!(()), |inner, item| quote!((#item, #inner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_errors(body: &TokenStream) -> Vec<String> {
        match check_body(body) {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|error| error.to_string()).collect(),
        }
    }

    #[test]
    fn self_and_self_type_in_a_body_are_errors() {
        let errors = body_errors(&quote! {
            let total = self.count + 1;
            println!("{}", self.name);
            Self::new(total)
        });
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("let this = self.clone();"), "{errors:?}");
        assert!(errors[2].contains("no `Self`"), "{errors:?}");
    }

    #[test]
    fn nested_items_module_paths_and_macro_data_may_say_self() {
        let errors = body_errors(&quote! {
            struct Wrapper(u32);
            impl Wrapper {
                fn get(&self) -> Self { Self(self.0) }
            }
            let text = stringify!(self);
            let closure = |x: u32| self::helper(x);
            closure(Wrapper(1).get().0)
        });
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn self_inside_a_closure_of_the_body_is_an_error() {
        let errors = body_errors(&quote! { let f = || self.count; f() });
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn finds_signature_types_named_like_the_message() {
        let sig: syn::Signature = syn::parse_quote!(fn job_config(limit: Option<JobConfig>) -> u32);
        let name: Ident = syn::parse_quote!(JobConfig);
        assert!(type_named(&sig, &name).is_some());
        let sig: syn::Signature = syn::parse_quote!(fn job_config() -> config::JobConfig);
        assert!(type_named(&sig, &name).is_none());
    }
}
