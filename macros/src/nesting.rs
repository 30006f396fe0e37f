//! Which blocks are entry points: a block lexically nested in another is marked with the
//! entry point it belongs to, by rewriting the `remote!` calls in the enclosing body.
//!
//! A peer runs a nested block for another peer only as a hop of a scope whose root call was
//! its entry point, so the outermost block's checks (its policy, its own logic before the
//! hop) cannot be skipped by calling the inner block directly. Only the nearest `remote!`
//! calls are marked; each marks its own nested calls when it expands, passing the same root.

use proc_macro2::{Group, Literal, TokenStream, TokenTree};
use quote::quote;

/// `tokens` with `root = <root>u64;` put first in every `remote!(..)`, `remote_all!(..)` and
/// `remote_stream!(..)` directly inside them (in any group, but not inside another block,
/// which marks its own).
pub(crate) fn mark_nested(tokens: TokenStream, root: u64) -> TokenStream {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = TokenStream::new();
    let mut at = 0;
    while let Some(tree) = trees.get(at) {
        at += 1;
        match tree {
            TokenTree::Ident(ident)
                if ident == "remote" || ident == "remote_all" || ident == "remote_stream" =>
            {
                out.extend([tree.clone()]);
                if let (Some(TokenTree::Punct(bang)), Some(TokenTree::Group(call))) =
                    (trees.get(at), trees.get(at + 1))
                    && bang.as_char() == '!'
                {
                    let root = Literal::u64_suffixed(root);
                    let mut stream = quote!(root = #root;);
                    stream.extend(call.stream());
                    let mut marked = Group::new(call.delimiter(), stream);
                    marked.set_span(call.span());
                    out.extend([TokenTree::Punct(bang.clone()), TokenTree::Group(marked)]);
                    at += 2;
                }
            }
            TokenTree::Group(group) => {
                let mut inner = Group::new(group.delimiter(), mark_nested(group.stream(), root));
                inner.set_span(group.span());
                out.extend([TokenTree::Group(inner)]);
            }
            other => out.extend([other.clone()]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_the_nearest_calls_only() {
        let body = quote! {
            let x = 1;
            if x > 0 { crate::remote!(peer, [x: u32] { remote!(other, [] {}) }).await }
            let y = remote![peer, [] {}];
            let z = remote_all!(peers, [] {});
            not_remote!(a);
        };
        let marked = mark_nested(body, 7).to_string();
        assert_eq!(marked.matches("root = 7u64 ;").count(), 3, "{marked}");
        assert!(
            marked.contains("remote_all ! (root = 7u64 ; peers"),
            "{marked}"
        );
        assert!(marked.contains("remote ! (root = 7u64 ; peer"), "{marked}");
        assert!(marked.contains("remote ! [root = 7u64 ; peer"), "{marked}");
        // The inner call is left to the block it is in.
        assert!(marked.contains("{ remote ! (other"), "{marked}");
        assert!(marked.contains("not_remote ! (a)"), "{marked}");
    }
}
