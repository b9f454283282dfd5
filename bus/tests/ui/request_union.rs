use xbus::Request;

#[derive(Request)]
#[request(response = u32)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
