#[cache_put(ttl = 300, key = "product:<product.id>", tags = ["category:<product.category>"])]
async fn save(product: Product) -> Result<Product, DbError> {
    db::update(&product).await?;
    Ok(product)
}

#[invalidates(tags = ["category:<category>"], keys = ["product:<id>"])]
async fn delete(id: u64, category: u64) -> Result<(), DbError> {
    db::delete(id).await
}

#[cache_put(ttl = 300, key = "product:<product.id>")]
#[invalidates(tag = "lists:<product.category>")]
async fn rename(product: Product) -> Result<Product, DbError> {
    db::update(&product).await?;
    Ok(product)
}
