//! The boilerplate every zero-copy view shares, written once: [`view!`]
//! declares the struct with `new_unchecked` and `into_inner`, and
//! [`fields!`] the getters and setters of fixed big-endian fields (`u8`,
//! `u16`, `u32` at a constant offset). What a view validates
//! (`new_checked`) and any field that is not a plain integer stays written
//! by hand in the view's module.
//!
//! A getter reads within the length `new_checked` guaranteed, so it cannot
//! panic on a checked view; on an unchecked one, as everywhere, the caller
//! answers for the length.

/// Declares `pub struct $name<T: AsRef<[u8]>> { buffer: T }` with
/// `new_unchecked` and `into_inner`.
macro_rules! view {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps a buffer without checking it.
            #[inline]
            pub fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// Returns the underlying buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

/// Getters (with their docs) and setters of big-endian integer fields:
/// `fields!(View { /// doc \n getter / setter: u16 @ OFFSET, ... });`.
macro_rules! fields {
    ($view:ident { $( $(#[$doc:meta])* $get:ident / $set:ident : $ty:ty = $at:expr ),* $(,)? }) => {
        impl<T: AsRef<[u8]>> $view<T> {
            $(
                $(#[$doc])*
                #[inline]
                pub fn $get(&self) -> $ty {
                    <$ty>::from_be_bytes($crate::packet::rd_array(self.buffer.as_ref(), $at))
                }
            )*
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $view<T> {
            $(
                #[doc = concat!("Sets [`", stringify!($view), "::", stringify!($get), "`].")]
                #[inline]
                pub fn $set(&mut self, value: $ty) {
                    let b = value.to_be_bytes();
                    self.buffer.as_mut()[$at..$at + b.len()].copy_from_slice(&b);
                }
            )*
        }
    };
}

pub(crate) use {fields, view};
