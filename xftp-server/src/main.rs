fn main() {
    println!("xftp-server: not yet wired");
}
