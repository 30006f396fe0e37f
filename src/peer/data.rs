//! Application state a peer hands to the blocks it runs: [`PeerBuilder::data`] stores a
//! value, [`Scope::data`] finds it again by type.
//!
//! [`PeerBuilder::data`]: crate::PeerBuilder::data
//! [`Scope::data`]: crate::Scope::data

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Values keyed by their type, as actix-web's `App::app_data` keeps them.
#[derive(Default, Clone)]
pub(crate) struct AppData {
    values: HashMap<TypeId, Entry>,
}

#[derive(Clone)]
struct Entry {
    /// For `Debug` only: the map is keyed by `TypeId`, which prints as a number.
    type_name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
}

impl AppData {
    /// Stores `value`, replacing an earlier value of the same type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(
            TypeId::of::<T>(),
            Entry {
                type_name: std::any::type_name::<T>(),
                value: Arc::new(value),
            },
        );
    }

    /// The value stored for `type_id`.
    pub(crate) fn get(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        self.values.get(&type_id).map(|entry| entry.value.clone())
    }
}

impl fmt::Debug for AppData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.values.values().map(|entry| entry.type_name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_type_and_replaced_by_the_same_type() {
        let mut data = AppData::default();
        data.insert(7_u32);
        data.insert("config".to_owned());
        data.insert(8_u32);
        let number = data.get(TypeId::of::<u32>()).unwrap();
        assert_eq!(number.downcast_ref::<u32>(), Some(&8));
        let text = data.get(TypeId::of::<String>()).unwrap();
        assert_eq!(
            text.downcast_ref::<String>().map(String::as_str),
            Some("config")
        );
        assert!(data.get(TypeId::of::<u64>()).is_none());
        assert_eq!(format!("{data:?}").matches("u32").count(), 1);
    }
}
