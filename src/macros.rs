//! Small macros shared by the middleware.

/// `get_ref`, `get_mut` and `into_inner` for a service with an `inner` field.
macro_rules! inner_accessors {
    () => {
        /// A reference to the inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// A mutable reference to the inner service.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// The inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub(crate) use inner_accessors;
