fn main() {
    println!("iter8-controller: not built yet");
}
