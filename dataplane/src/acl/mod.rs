//! ACL: see the acl helper.
