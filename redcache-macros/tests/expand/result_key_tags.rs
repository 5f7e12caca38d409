/// A product, cached for five minutes under its id, tagged by category.
#[cached(ttl = 300, key = "product:<id>", tags = ["category:<category_id>"])]
pub async fn get_product(id: u64, category_id: u64) -> Result<Product, DbError> {
    db::load_product(id).await
}
