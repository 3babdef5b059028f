fn main() {
    println!("iter8-render: not built yet");
}
