async fn nightly(name: String) -> Result<(), JobError> {
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_key = ::redcache::__private::Key::new()
        .lit("job:")
        .part(::redcache::__private::key_part!(name))
        .finish();
    ::redcache::__private::locked(
            __redcache_cache,
            ::redcache::__private::LockCall::new(&__redcache_key)
                .ttl(::redcache::__private::Duration::from_secs(30))
                .wait(::redcache::__private::Duration::from_secs(5)),
            async move { jobs::run(&name).await },
        )
        .await
}
async fn rebuild_index(&self) -> Result<(), JobError> {
    let __redcache_cache = ::redcache::__private::handle(&(self.cache));
    let __redcache_fn = ::redcache::__private::fn_path!();
    ::redcache::__private::locked(
            __redcache_cache,
            ::redcache::__private::LockCall::new(
                    &__redcache_fn.with_self(::core::any::type_name::<Self>()),
                )
                .ttl(::redcache::__private::Duration::from_secs(600))
                .auto_extend(),
            async move { self.index.rebuild().await },
        )
        .await
}
