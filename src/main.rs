fn main() {
    eprintln!("stcp-engine: under construction");
}
