//! A small deterministic random number generator and the samplers the simulation tests need:
//! xoshiro256** (Blackman & Vigna 2018) seeded through splitmix64, Bernoulli, normal (Marsaglia
//! polar), gamma (Marsaglia & Tsang 2000) and beta draws. Test-only.

pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform on [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Successes in n Bernoulli(p) trials (n small: a sum).
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        (0..n).filter(|_| self.bernoulli(p)).count() as u64
    }

    pub fn normal(&mut self) -> f64 {
        loop {
            let (u, v) = (2.0 * self.unit() - 1.0, 2.0 * self.unit() - 1.0);
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * s.ln() / s).sqrt();
            }
        }
    }

    /// Gamma(shape, 1).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            // Boost: Gamma(a) = Gamma(a + 1) · U^(1/a).
            let u = self.unit().max(f64::MIN_POSITIVE);
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.unit();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        x / (x + self.gamma(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_have_the_right_moments() {
        let mut rng = Rng::new(1);
        let n = 200_000;
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let var = |xs: &[f64]| {
            let m = mean(xs);
            xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64
        };
        let u: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
        assert!((mean(&u) - 0.5).abs() < 0.003 && (var(&u) - 1.0 / 12.0).abs() < 0.001);
        let z: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        assert!(mean(&z).abs() < 0.01 && (var(&z) - 1.0).abs() < 0.015);
        // Beta(44.1, 4.9): mean 0.9, variance ab/((a+b)²(a+b+1)) = 0.0018.
        let b: Vec<f64> = (0..n).map(|_| rng.beta(44.1, 4.9)).collect();
        assert!((mean(&b) - 0.9).abs() < 0.001, "{}", mean(&b));
        assert!((var(&b) - 0.0018).abs() < 0.0001, "{}", var(&b));
        let g: Vec<f64> = (0..n).map(|_| rng.gamma(0.5)).collect();
        assert!((mean(&g) - 0.5).abs() < 0.01 && (var(&g) - 0.5).abs() < 0.02);
    }
}
